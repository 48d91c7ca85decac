/**
 * Opening a safe for a backup: read safe.json (creating it only for a safe that holds nothing yet),
 * check the owner and the key. A safe that holds recovery points but lost its safe.json is an error,
 * never a new safe: a new safe.json would carry a new key salt (every old RP of an encrypted safe
 * would then fail authentication) or no encryption at all.
 */
import { randomBytes } from 'node:crypto';
import { CdpError } from '#core/errors.ts';
import { FORMAT_VERSION } from '#core/format/constants.ts';
import { deriveKeys, keyCheckMatches, type SafeKeys } from '#core/format/crypto.ts';
import { encodeJson, type SafeConfig } from '#core/format/manifest.ts';
import { parseKey, safeConfigKey, safePrefix } from '#core/keys.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import { SafeReader } from '#core/safe-reader.ts';

export class SafeAccessError extends CdpError {
  constructor(safe: string, reason: string, hint?: string) {
    super('E_SAFE_ACCESS', `safe ${safe}: ${reason}`, { safe }, hint);
  }
}

/** What the safe holds besides locks: recovery points, segments, maps, generations. */
async function contentCount(store: ObjectStore, safe: string): Promise<{ objects: number; rps: number }> {
  let objects = 0;
  let rps = 0;
  for (const o of await store.list(safePrefix(safe))) {
    try {
      const k = parseKey(o.key);
      if (k.kind === 'lock') continue;
      if (k.kind === 'manifest') rps++;
    } catch {
      continue;
    }
    objects++;
  }
  return { objects, rps };
}

export interface OpenSafeInput {
  readonly safe: string;
  readonly owner: string;
  readonly key?: Buffer;
  readonly takeOver?: boolean;
  readonly now?: () => Date;
}

export async function openSafe(
  store: ObjectStore,
  o: OpenSafeInput,
): Promise<{ config: SafeConfig; keys?: SafeKeys }> {
  const reader = new SafeReader(store, o.safe);
  let config = await reader.config();
  if (!config) {
    const held = await contentCount(store, o.safe);
    if (held.objects > 0)
      throw new CdpError(
        'E_SAFE_FORMAT',
        `safe ${o.safe}: safe.json is missing, but ${store.location} holds ${held.rps} recovery point(s) and ${held.objects} objects in all; it is not a new safe`,
        { safe: o.safe },
        'restore safe.json from a replica of this safe (or a copy of it) and run again; a new safe.json would make the existing RPs unreadable (an encrypted safe needs its own key salt)',
      );
    const salt = randomBytes(16);
    const keys = o.key ? deriveKeys(o.key, salt) : undefined;
    const fresh: SafeConfig = {
      format: 'cdp-safe',
      version: FORMAT_VERSION,
      safe: o.safe,
      createdAt: (o.now?.() ?? new Date()).toISOString(),
      owner: o.owner,
      encryption: keys
        ? { alg: 'aes-256-gcm+hmac-sha256', salt: salt.toString('base64'), keyCheck: keys.keyCheck }
        : null,
    };
    await store.putIfAbsent(safeConfigKey(o.safe), encodeJson(fresh));
    config = (await reader.config())!;
  }
  if (config.safe !== o.safe) throw new SafeAccessError(o.safe, `safe.json names safe '${config.safe}'`);
  if (config.owner !== o.owner && !o.takeOver) {
    throw new SafeAccessError(
      o.safe,
      `belongs to agent ${config.owner}, this agent is ${o.owner}`,
      'pick another safe, or pass --take-over if this machine replaced that agent',
    );
  }
  if (!config.encryption) {
    if (o.key)
      throw new SafeAccessError(o.safe, 'is not encrypted, but a key was given', 'drop --encrypt-key-file');
    return { config };
  }
  if (!o.key) throw new SafeAccessError(o.safe, 'is encrypted', 'pass --encrypt-key-file with its key');
  const keys = deriveKeys(o.key, Buffer.from(config.encryption.salt, 'base64'));
  if (!keyCheckMatches(keys, config.encryption.keyCheck))
    throw new SafeAccessError(o.safe, 'wrong encryption key');
  return { config, keys };
}
