/**
 * `--safe` names a safe: a directory (`/backups/db1`) or an S3 prefix (`s3://bucket/safes/db1`).
 * The last path component is the safe id. The offsite stack indexes `s3://<bucket>/safes/<id>`.
 *
 * The S3 adapter (and with it the AWS SDK) is imported only for an s3:// safe: loading the SDK
 * costs about 36 MiB of resident memory, which a directory safe does not need.
 */
import { resolve } from 'node:path';
import { FsObjectStore } from '#adapters/fs-store.ts';
import { CdpError } from '#core/errors.ts';
import { isSafeId, SAFES_PREFIX } from '#core/keys.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import { SafeReader } from '#core/safe-reader.ts';

export interface SafeLocation {
  readonly store: ObjectStore;
  readonly safe: string;
  /** Set when an S3 safe is outside `safes/`, where the offsite stack does not look. */
  readonly warning?: string;
}

export class SafeLocationError extends CdpError {
  constructor(arg: string, reason: string) {
    super(
      'E_USAGE',
      `--safe ${arg}: ${reason}`,
      {},
      'examples: --safe /backups/db1, --safe s3://my-bucket/safes/db1',
    );
  }
}

/** There is no safe at the location: no safe.json and no recovery point. */
export async function requireSafe(loc: SafeLocation): Promise<void> {
  const reader = new SafeReader(loc.store, loc.safe);
  if (await reader.config().catch(() => 'unreadable')) return;
  if ((await reader.listRps()).length > 0) return;
  throw new CdpError(
    'E_NO_SAFE',
    `no safe at ${loc.store.location} (no safe.json, no recovery point)`,
    { safe: loc.safe },
    'check --safe: a directory safe is the folder that holds safe.json, an S3 safe is s3://<bucket>/safes/<id>',
  );
}

export async function openSafeLocation(arg: string): Promise<SafeLocation> {
  const s3 = /^s3:\/\/([^/]+)\/(.+?)\/*$/.exec(arg);
  if (arg.startsWith('s3://') && !s3)
    throw new SafeLocationError(arg, 'needs a bucket and a prefix ending in the safe id');
  const path = s3 ? s3[2]! : resolve(arg);
  const safe = path.split('/').filter(Boolean).pop() ?? '';
  if (!isSafeId(safe))
    throw new SafeLocationError(arg, `'${safe}' is not a valid safe id (a-z 0-9 -, up to 63)`);
  if (!s3) return { store: new FsObjectStore(path, safe), safe };
  const prefix = s3[2]!;
  const warning =
    prefix === `${SAFES_PREFIX}${safe}`
      ? undefined
      : `the offsite stack only indexes s3://${s3[1]}/${SAFES_PREFIX}${safe}`;
  const [{ S3ObjectStore }, { makeS3Client }] = await Promise.all([
    import('#adapters/s3-store.ts'),
    import('./clients.ts'),
  ]);
  return { store: new S3ObjectStore(makeS3Client(), s3[1]!, prefix, safe), safe, warning };
}
