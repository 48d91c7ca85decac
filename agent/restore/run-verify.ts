/**
 * Checks that recovery points are restorable without writing anything: every referenced frame is
 * read and decoded, and its checksum (and AES-GCM tag) verified. Damage is reported by device,
 * block range, RP and segment.
 */

import { forEachLimit } from '#core/concurrency.ts';
import type { SafeKeys } from '#core/format/crypto.ts';
import { decodeRunAsync } from '#core/plan-frames.ts';
import type { RestorePlan } from '#core/restore-plan.ts';
import type { DamagedRange } from './run-restore.ts';
import type { SegmentSource } from './segment-source.ts';

export interface VerifiedDevice {
  readonly rp: number;
  readonly device: string;
  readonly dataBlocks: number;
  readonly damaged: readonly DamagedRange[];
}

export async function verifyPages(
  pages: AsyncIterable<RestorePlan>,
  source: SegmentSource,
  keysFor: (plan: RestorePlan) => SafeKeys | undefined,
  parallel = 8,
): Promise<VerifiedDevice> {
  let keys: SafeKeys | undefined;
  let head: RestorePlan | undefined;
  let dataBlocks = 0;
  const damaged: DamagedRange[] = [];
  for await (const page of pages) {
    if (!head) {
      head = page;
      keys = keysFor(page);
    }
    const ctx = { safe: page.safe, device: page.device, rp: page.rp };
    await forEachLimit(page.ranges, parallel, async (range) => {
      let buf: Buffer;
      try {
        buf = await source.range(range.segment, range.offset, range.length);
      } catch (e) {
        for (const run of range.runs) {
          damaged.push({
            first: run.first,
            count: run.count,
            segment: range.segment,
            frame: run.frame,
            reason: (e as Error).message,
          });
        }
        return;
      }
      for (const run of range.runs) {
        await decodeRunAsync(
          buf,
          run.offset,
          run,
          { ...ctx, segment: range.segment },
          keys,
          async () => undefined,
          (first, count, reason) =>
            damaged.push({
              first,
              count,
              segment: range.segment,
              frame: run.frame + (first - run.first),
              reason,
            }),
        );
        dataBlocks += run.count;
      }
    });
  }
  if (!head) throw new Error('the restore plan is empty');
  damaged.sort((a, b) => a.first - b.first);
  return { rp: head.rp, device: head.device, dataBlocks, damaged };
}
