/**
 * Multi-Point Replication of one safe: copies the committed RPs that a destination lacks, oldest
 * first, as they are (segments, block maps, manifest: no re-read of devices, no recompression,
 * no key needed), the manifest strictly last, so the destination never shows a partial RP. Only
 * committed RPs are copied, so a backup writing to the source at the same time is harmless; a
 * killed run leaves nothing partial (every object is written atomically) and the next run goes on
 * where it stopped. Segments travel in bounded chunks through a smooth rate limit.
 */
import { forEachLimit } from '#core/concurrency.ts';
import { CdpError } from '#core/errors.ts';
import { decodeSafeConfig } from '#core/format/manifest.ts';
import { manifestKey, safeConfigKey } from '#core/keys.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import { SafeReader } from '#core/safe-reader.ts';
import type { RateLimiter } from '../backup/rate-limiter.ts';

export interface ReplicateOptions {
  readonly limiter?: RateLimiter;
  /** Chunk of a segment copy. @default 8 MiB */
  readonly chunkBytes?: number;
  /**
   * Objects up to this size go in one request when no rate limit is set (like rclone's upload
   * cutoff): a 32 MiB segment is one PUT instead of a multipart upload of 5 MiB parts.
   * @default 64 MiB
   */
  readonly uploadCutoff?: number;
  /** Objects copied in parallel. @default 4 */
  readonly parallel?: number;
  onProgress?(copiedBytes: number, pendingBytes: number): void;
}

export interface ReplicateResult {
  readonly safe: string;
  readonly from: string;
  readonly to: string;
  /** RPs copied by this run. */
  readonly copiedRps: number[];
  readonly copiedBytes: number;
  /** Objects already at the destination (from an earlier, interrupted run). */
  readonly skippedObjects: number;
  readonly newestRp: number | null;
  readonly durationMs: number;
}

export class ReplicationError extends CdpError {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super('E_SAFE_ACCESS', message, context);
  }
}

async function copyObject(
  src: ObjectStore,
  dst: ObjectStore,
  key: string,
  size: number,
  o: ReplicateOptions,
  count: (n: number) => void,
): Promise<void> {
  const chunk = o.chunkBytes ?? 8 * 1024 * 1024;
  // with a rate limit, chunks keep the flow smooth; without, whole objects are fewer requests
  const whole = o.limiter ? chunk : Math.max(chunk, o.uploadCutoff ?? 64 * 1024 * 1024);
  if (size <= whole) {
    const body = await src.get(key);
    await o.limiter?.take(body.length);
    await dst.put(key, body);
    count(body.length);
    return;
  }
  const w = dst.openWriter(key);
  try {
    for (let at = 0; at < size; at += chunk) {
      const part = await src.getRange(key, at, Math.min(chunk, size - at));
      await o.limiter?.take(part.length);
      await w.write(part);
      count(part.length);
    }
    await w.finish();
  } catch (e) {
    await w.abort().catch(() => undefined);
    throw e;
  }
}

/** What a destination lacks: the RPs to copy and their bytes. */
export async function pendingOf(
  src: SafeReader,
  dst: ObjectStore,
): Promise<{
  rps: number[];
  bytes: number;
  newestSource: number | null;
  newestDestination: number | null;
  /** The RPs the destination has. */
  have: Set<number>;
}> {
  const have = new Set(await new SafeReader(dst, src.safe).listRps());
  const all = await src.listRps();
  const rps = all.filter((rp) => !have.has(rp));
  let bytes = 0;
  for (const rp of rps) {
    const m = await src.manifest(rp);
    bytes +=
      m.segments.reduce((a, s) => a + s.bytes, 0) + m.devices.reduce((a, d) => a + d.blockMap.bytes, 0);
  }
  return {
    rps,
    bytes,
    newestSource: all.at(-1) ?? null,
    newestDestination: [...have].sort((a, b) => a - b).at(-1) ?? null,
    have,
  };
}

export async function replicateSafe(
  src: ObjectStore,
  dst: ObjectStore,
  safe: string,
  o: ReplicateOptions = {},
): Promise<ReplicateResult> {
  const t0 = Date.now();
  const reader = new SafeReader(src, safe);
  const cfgKey = safeConfigKey(safe);
  const srcCfgBody = await src.get(cfgKey).catch(() => {
    throw new ReplicationError(`${src.location} is not a safe (no safe.json)`, { safe });
  });
  const srcCfg = decodeSafeConfig(srcCfgBody, `${src.location}/safe.json`);
  const dstHead = await dst.head(cfgKey);
  if (dstHead) {
    const dstCfg = decodeSafeConfig(await dst.get(cfgKey), `${dst.location}/safe.json`);
    if (dstCfg.createdAt !== srcCfg.createdAt || dstCfg.owner !== srcCfg.owner) {
      throw new ReplicationError(
        `${dst.location} holds another safe ${dstCfg.safe} (created ${dstCfg.createdAt} by ${dstCfg.owner}); not replicating ${src.location} over it`,
        { safe },
      );
    }
  } else {
    await dst.putIfAbsent(cfgKey, srcCfgBody);
  }
  const pending = await pendingOf(reader, dst);
  let copied = 0;
  let done = 0;
  let skipped = 0;
  const progress = (n: number): void => {
    done += n;
    o.onProgress?.(done, pending.bytes);
  };
  const count = (n: number): void => {
    copied += n;
    progress(n);
  };
  const copiedRps: number[] = [];
  const present = new Set(pending.have);
  for (const rp of pending.rps) {
    const m = await reader.manifest(rp);
    if (m.parent !== null && !present.has(m.parent)) {
      // the source's retention merged the parent away before it reached this destination:
      // copying the manifest as it is would leave an RP whose chain is broken there
      throw new ReplicationError(
        `RP ${rp} of ${src.location} builds on RP ${m.parent}, which the source's compaction merged away ` +
          `before it was replicated to ${dst.location}; replicate before compacting the source, or start the destination afresh`,
        { safe, rp },
      );
    }
    const objects = [
      ...m.segments.map((s) => ({ key: s.key, size: s.bytes })),
      ...m.devices.map((d) => ({ key: d.blockMap.key, size: d.blockMap.bytes })),
    ];
    await forEachLimit(objects, o.parallel ?? 4, async (obj) => {
      const there = await dst.head(obj.key);
      if (there?.size === obj.size) {
        skipped++;
        progress(obj.size);
        return;
      }
      await copyObject(src, dst, obj.key, obj.size, o, count);
    });
    // the manifest last, exactly as it is: the RP exists at the destination only now
    const mk = manifestKey(safe, rp);
    const body = await src.get(mk);
    await dst.putIfAbsent(mk, body);
    copiedRps.push(rp);
    present.add(rp);
  }
  return {
    safe,
    from: src.location,
    to: dst.location,
    copiedRps,
    copiedBytes: copied,
    skippedObjects: skipped,
    newestRp: pending.newestSource,
    durationMs: Date.now() - t0,
  };
}
