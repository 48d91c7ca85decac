/**
 * Use case: produce one part of an export (an RP of a device as a raw image object): read the
 * part's block range through a restore plan, decode and check every block, upload the part, and
 * record its ETag. The invocation that records the last part completes the multipart upload.
 * Parts are independent, so any number run in parallel, each within Lambda's limits; a retried
 * part uploads again and records the same part number (idempotent).
 */
import { partGeometry, partSpan } from '#core/export-geometry.ts';
import { segmentKey } from '#core/keys.ts';
import { decodeRunAsync } from '#core/plan-frames.ts';
import type { ExportLog } from '#core/ports/export-log.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import { planPage } from '#core/restore-plan.ts';
import { SafeReader } from '#core/safe-reader.ts';

export interface PartTask {
  readonly safe: string;
  readonly exportId: string;
  readonly part: number;
}

export interface ExportPartDeps {
  readonly exports: ExportLog;
  storeFor(safe: string): ObjectStore;
  uploadPart(key: string, uploadId: string, part: number, body: Buffer): Promise<string>;
  complete(key: string, uploadId: string, parts: { part: number; etag: string }[]): Promise<void>;
  now(): Date;
}

export type PartOutcome =
  | {
      readonly outcome: 'uploaded';
      readonly part: number;
      readonly recorded: number;
      readonly of: number;
      readonly completed: boolean;
    }
  | { readonly outcome: 'skipped'; readonly reason: string };

export async function exportPart(deps: ExportPartDeps, t: PartTask): Promise<PartOutcome> {
  const e = await deps.exports.getExport(t.safe, t.exportId);
  if (!e) return { outcome: 'skipped', reason: `export ${t.exportId} of safe ${t.safe} is unknown` };
  if (e.state !== 'running') return { outcome: 'skipped', reason: `export ${t.exportId} is ${e.state}` };
  const store = deps.storeFor(t.safe);
  const reader = new SafeReader(store, t.safe);
  const resolved = await reader.resolve(e.rp, e.device);
  const g = partGeometry(e.deviceSize, resolved.blockSize, e.partBytes);
  const span = partSpan(g, t.part, e.deviceSize);
  const body = Buffer.alloc(span.bytes);
  const toBlock = span.firstBlock + span.blocks;
  for (let from: number | null = span.firstBlock; from !== null && from < toBlock; ) {
    const page = await planPage(reader, resolved, null, { fromBlock: from, toBlock });
    for (const range of page.ranges) {
      const buf = await store.getRange(segmentKey(t.safe, range.segment), range.offset, range.length);
      for (const run of range.runs) {
        await decodeRunAsync(
          buf,
          run.offset,
          run,
          { safe: t.safe, device: e.device, rp: e.rp, segment: range.segment },
          undefined,
          async (first, plains) => {
            if (first < span.firstBlock || first + plains.length > toBlock) {
              throw new Error(`plan gave blocks ${first}+${plains.length} outside part ${t.part}`);
            }
            let at = (first - span.firstBlock) * resolved.blockSize;
            for (const p of plains) {
              p.copy(body, at);
              at += p.length;
            }
          },
        );
      }
    }
    from = page.nextBlock;
  }
  const etag = await deps.uploadPart(e.key, e.uploadId, t.part, body);
  const recorded = await deps.exports.recordPart(t.safe, t.exportId, t.part, etag);
  let completed = false;
  if (recorded === e.parts) {
    const now = await deps.exports.getExport(t.safe, t.exportId);
    const parts = Object.entries(now?.etags ?? {})
      .map(([n, tag]) => ({ part: Number(n), etag: tag }))
      .sort((a, b) => a.part - b.part);
    await deps.complete(e.key, e.uploadId, parts);
    completed = await deps.exports.finish(t.safe, t.exportId, 'complete', deps.now().toISOString());
  }
  return { outcome: 'uploaded', part: t.part, recorded, of: e.parts, completed };
}
