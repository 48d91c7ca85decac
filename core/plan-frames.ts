/**
 * Decodes the frames of one run of a restore plan from the bytes of its ranged read: the run's
 * frames are consecutive, each found by its header's length. Every block is checked (identity =
 * checksum of the plain block, AES-GCM tag when encrypted); a bad one is a CorruptBlockError
 * naming device, block, RP and segment.
 */
import type { SafeKeys } from './format/crypto.ts';
import { decodeFrame, FrameError } from './format/frame.ts';
import type { PlanRun } from './restore-plan.ts';
import { CorruptBlockError } from './safe-reader.ts';

export interface RunContext {
  readonly safe: string;
  readonly device: string;
  readonly rp: number;
  readonly segment: string;
}

/**
 * Calls `onBlock` for each block of `run` in order, decoding from `buf` starting at `offset`.
 * On a corrupt frame: throws, or with `onDamaged` reports the rest of the run (frame boundaries
 * past a damaged header cannot be trusted) and returns.
 */
export function decodeRun(
  buf: Buffer,
  offset: number,
  run: Pick<PlanRun, 'first' | 'count'>,
  ctx: RunContext,
  keys: SafeKeys | undefined,
  onBlock: (block: number, plain: Buffer) => void,
  onDamaged?: (first: number, count: number, reason: string) => void,
): void {
  const opts = { dataKey: keys?.dataKey, idKey: keys?.idKey };
  let at = offset;
  for (let i = 0; i < run.count; i++) {
    const block = run.first + i;
    let f: ReturnType<typeof decodeFrame>;
    try {
      if (at >= buf.length) throw new FrameError('frame missing from the ranged read (truncated segment?)');
      f = decodeFrame(buf, at, opts);
    } catch (e) {
      if (!(e instanceof FrameError)) throw e;
      if (!onDamaged) throw new CorruptBlockError(e.message, { ...ctx, block });
      onDamaged(block, run.count - i, e.message);
      return;
    }
    onBlock(block, f.plain);
    at += f.frameLength;
  }
}
