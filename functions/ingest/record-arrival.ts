/**
 * Use case: an object arrived under the safes prefix. Objects that follow the bucket layout are
 * recorded in the catalog; anything else is quarantined with the reason. Nothing is deleted.
 */
import { CdpError } from '#core/errors.ts';
import { parseKey } from '#core/keys.ts';
import type { UploadLog } from '#core/ports/upload-log.ts';
import type { ObjectCreatedEvent } from '#core/s3-event.ts';

export interface RecordArrivalDeps {
  readonly uploads: UploadLog;
  /** The bucket this function serves; events of other buckets are quarantined. */
  readonly bucket: string;
}

export type ArrivalOutcome =
  | { readonly outcome: 'recorded'; readonly kind: string; readonly safe: string }
  | { readonly outcome: 'quarantined'; readonly reason: string };

export async function recordArrival(
  deps: RecordArrivalDeps,
  event: ObjectCreatedEvent,
): Promise<ArrivalOutcome> {
  const { key, size = 0 } = event.detail.object;
  const etag = event.detail.object.etag ?? event.detail.object.eTag ?? '';
  const base = { key, size, createdAt: event.time };
  if (event.detail.bucket.name !== deps.bucket) {
    const reason = `event for bucket ${event.detail.bucket.name}, this function serves ${deps.bucket}`;
    await deps.uploads.quarantine({ ...base, reason });
    return { outcome: 'quarantined', reason };
  }
  try {
    const parsed = parseKey(key);
    await deps.uploads.recordObject({ ...base, safe: parsed.safe, kind: parsed.kind, etag });
    return { outcome: 'recorded', kind: parsed.kind, safe: parsed.safe };
  } catch (e) {
    if (!(e instanceof CdpError) || e.code !== 'E_BAD_KEY') throw e;
    await deps.uploads.quarantine({ ...base, reason: e.message });
    return { outcome: 'quarantined', reason: e.message };
  }
}
