/**
 * Keys and block identities. Unencrypted safes identify a block by SHA-256 of its plain bytes.
 * Encrypted safes derive two subkeys from the 32-byte master key with HKDF-SHA256: an id key
 * (block identity = HMAC-SHA256(idKey, plain), so stored identities reveal nothing about content)
 * and a data key (AES-256-GCM over each frame's payload). The master key never leaves the agent.
 */
import { createHash, createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';

export const IDENTITY_BYTES = 32;

export interface SafeKeys {
  readonly dataKey: Buffer;
  readonly idKey: Buffer;
  /** HMAC of a fixed label, stored in safe.json to tell a wrong key from a right one. */
  readonly keyCheck: string;
}

export function deriveKeys(master: Buffer, salt: Buffer): SafeKeys {
  if (master.length !== 32) throw new Error(`encryption key must be 32 bytes, got ${master.length}`);
  const d = (info: string): Buffer => Buffer.from(hkdfSync('sha256', master, salt, info, 32));
  const check = d('cdp-offsite key-check v1');
  return {
    dataKey: d('cdp-offsite data v1'),
    idKey: d('cdp-offsite block-id v1'),
    keyCheck: createHmac('sha256', check).update('cdp-offsite').digest('base64'),
  };
}

export function keyCheckMatches(keys: SafeKeys, stored: string): boolean {
  const a = Buffer.from(keys.keyCheck, 'base64');
  const b = Buffer.from(stored, 'base64');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The identity of a block: SHA-256, or HMAC-SHA256 under the id key when the safe is encrypted. */
export function blockIdentity(plain: Uint8Array, idKey: Buffer | undefined): Buffer {
  return idKey
    ? createHmac('sha256', idKey).update(plain).digest()
    : createHash('sha256').update(plain).digest();
}

/** Parses a key file: 32 raw bytes, or 64 hex digits, or base64 of 32 bytes (whitespace ignored). */
export function parseKeyFile(content: Buffer): Buffer {
  if (content.length === 32) return content;
  const text = content.toString('utf8').trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  const b = Buffer.from(text, 'base64');
  if (b.length === 32) return b;
  throw new Error('key file must hold 32 bytes: raw, 64 hex digits or base64');
}
