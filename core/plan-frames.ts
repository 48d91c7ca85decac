/**
 * Decodes the frames of one run of a restore plan from the bytes of its ranged read: the run's
 * frames are consecutive, each found by its header's length. Every block is checked (identity =
 * checksum of the plain block, AES-GCM tag when encrypted); a bad one is a CorruptBlockError
 * naming device, block, RP and segment.
 */
import type { SafeKeys } from './format/crypto.ts';
import { FrameError, runFrameOffsets } from './format/frame.ts';
import { decodeFrameAsync } from './format/frame-async.ts';
import type { PlanRun } from './restore-plan.ts';
import { CorruptBlockError } from './safe-reader.ts';

export interface RunContext {
  readonly safe: string;
  readonly device: string;
  readonly rp: number;
  readonly segment: string;
}

/**
 * Decodes the blocks of `run` from `buf` starting at `offset`: frame offsets come from the
 * headers, then frames decode `batch` at a time (zstd on the thread pool); `onBatch` receives consecutive decoded blocks in order.
 * With `onDamaged`, a bad frame is reported alone (its neighbours still decode) unless its header
 * is unreadable, which ends the run.
 */
export async function decodeRunAsync(
  buf: Buffer,
  offset: number,
  run: Pick<PlanRun, 'first' | 'count'>,
  ctx: RunContext,
  keys: SafeKeys | undefined,
  onBatch: (first: number, plains: Buffer[]) => Promise<void>,
  onDamaged?: (first: number, count: number, reason: string) => void,
  batch = 32,
): Promise<void> {
  const opts = { dataKey: keys?.dataKey, idKey: keys?.idKey };
  const { offsets, headerError } = runFrameOffsets(buf, offset, run.count);
  if (headerError !== undefined && !onDamaged) {
    throw new CorruptBlockError(headerError, { ...ctx, block: run.first + offsets.length });
  }
  for (let i = 0; i < offsets.length; i += batch) {
    const n = Math.min(batch, offsets.length - i);
    const results = await Promise.all(
      Array.from({ length: n }, (_, k) =>
        decodeFrameAsync(buf, offsets[i + k]!, opts).then(
          (plain) => ({ plain }),
          (e: unknown) => {
            if (!(e instanceof FrameError)) throw e;
            return { error: e.message };
          },
        ),
      ),
    );
    let groupFirst = run.first + i;
    let group: Buffer[] = [];
    for (let k = 0; k < n; k++) {
      const r = results[k]!;
      const block = run.first + i + k;
      if ('plain' in r) {
        if (group.length === 0) groupFirst = block;
        group.push(r.plain);
        continue;
      }
      if (!onDamaged) throw new CorruptBlockError(r.error, { ...ctx, block });
      onDamaged(block, 1, r.error);
      if (group.length > 0) await onBatch(groupFirst, group);
      group = [];
    }
    if (group.length > 0) await onBatch(groupFirst, group);
  }
  if (headerError !== undefined)
    onDamaged?.(run.first + offsets.length, run.count - offsets.length, headerError);
}
