/**
 * Restores one device at one RP from a restore plan (core/restore-plan.ts) into a file or block
 * device: ranged reads in parallel (bounded: `parallel` ranges in flight), every block decoded
 * and checked, written at its offset. A new file is created sparse (zero blocks stay holes).
 *
 * A new file is written as `<to>.cdp-partial` and renamed when complete. Delta restore: when the
 * target already exists (an older or diverged copy, or the partial file of an interrupted restore),
 * each block is read and compared with the block's identity from the segment
 * footer; only differing blocks are fetched, and blocks that must be zero are zeroed. So running
 * the same restore again resumes it.
 */
import { constants, type FileHandle, open, rename, stat } from 'node:fs/promises';
import { forEachLimit } from '#core/concurrency.ts';
import { blockIdentity, type SafeKeys } from '#core/format/crypto.ts';
import { decodeRunAsync } from '#core/plan-frames.ts';
import type { PlanRange, PlanRun, RestorePlan } from '#core/restore-plan.ts';
import type { SegmentSource } from './segment-source.ts';

export interface RestoreInput {
  readonly pages: AsyncIterable<RestorePlan>;
  readonly source: SegmentSource;
  readonly to: string;
  /** The safe's keys, derived once the first plan page (with the safe's salt) is known. */
  keysFor?(plan: RestorePlan): SafeKeys | undefined;
  /** Go on past corrupt blocks, reporting them (they are left zero in a new file). */
  readonly allowDamaged?: boolean;
  /** 'auto': delta restore when `to` exists; 'never': overwrite it completely. @default 'auto' */
  readonly delta?: 'auto' | 'never';
  /** Ranged reads in flight. @default 8 */
  readonly parallel?: number;
  onProgress?(doneBytes: number, totalBytes: number): void;
}

export interface DamagedRange {
  readonly first: number;
  readonly count: number;
  readonly segment: string;
  readonly reason: string;
}

export interface RestoreResult {
  readonly safe: string;
  readonly device: string;
  readonly rp: number;
  readonly to: string;
  readonly deviceSize: number;
  readonly delta: boolean;
  /** Bytes of segment data read (ranges, plus footers in delta mode). */
  readonly fetchedBytes: number;
  readonly writtenBytes: number;
  /** Stored blocks of the device at this RP, and of those the ones already right in `to`. */
  readonly dataBlocks: number;
  readonly unchangedBlocks: number;
  readonly damaged: readonly DamagedRange[];
  readonly durationMs: number;
}

const ZERO_CHUNK = 4 * 1024 * 1024;

/** Suffix of a new file while it is being restored; renamed to the target name when complete. */
export const PARTIAL_SUFFIX = '.cdp-partial';

async function openTarget(
  to: string,
  deviceSize: number,
  mode: 'auto' | 'never',
): Promise<{ fh: FileHandle; delta: boolean; work: string }> {
  const st = await stat(to).catch(() => undefined);
  if (!st) {
    // A new file is written under a temporary name, so an interrupted or failed restore never
    // looks complete; running the restore again resumes it (a delta restore into the partial file).
    const work = `${to}${PARTIAL_SUFFIX}`;
    const partial = await stat(work).catch(() => undefined);
    if (partial?.isFile() && mode === 'auto') {
      const fh = await open(work, 'r+');
      await fh.truncate(deviceSize);
      return { fh, delta: true, work };
    }
    const fh = await open(work, constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC, 0o600);
    await fh.truncate(deviceSize);
    return { fh, delta: false, work };
  }
  if (st.isBlockDevice()) {
    if (st.size !== 0 && st.size < deviceSize)
      throw new Error(`${to} is ${st.size} bytes, the device needs ${deviceSize}`);
    return { fh: await open(to, 'r+'), delta: mode === 'auto', work: to };
  }
  if (!st.isFile()) throw new Error(`${to} is neither a file nor a block device`);
  const fh = await open(to, 'r+');
  if (mode === 'never') await fh.truncate(0);
  await fh.truncate(deviceSize);
  return { fh, delta: mode === 'auto', work: to };
}

export async function runRestore(input: RestoreInput): Promise<RestoreResult> {
  const t0 = Date.now();
  const parallel = input.parallel ?? 8;
  const it = input.pages[Symbol.asyncIterator]();
  const firstPage = await it.next();
  if (firstPage.done) throw new Error('the restore plan is empty');
  const head = firstPage.value;
  const { blockSize, deviceSize } = head;
  const keys = input.keysFor?.(head);
  const blocks = Math.ceil(deviceSize / blockSize);
  const plainLen = (block: number): number => Math.min(blockSize, deviceSize - block * blockSize);
  const { fh, delta, work } = await openTarget(input.to, deviceSize, input.delta ?? 'auto');
  const damaged: DamagedRange[] = [];
  let written = 0;
  let dataBlocks = 0;
  let unchanged = 0;
  let done = 0;
  const progress = (bytes: number): void => {
    done += bytes;
    input.onProgress?.(Math.min(done, deviceSize), deviceSize);
  };

  const writeBlocks = async (first: number, plains: Buffer[]): Promise<void> => {
    if (plains.length === 0) return;
    const r = await fh.writev(plains, first * blockSize);
    written += r.bytesWritten;
  };

  /** Decodes the frames of `run` from `buf` at `offset` (in parallel on the thread pool) and writes them. */
  const decodeAndWrite = (
    buf: Buffer,
    offset: number,
    run: Pick<PlanRun, 'first' | 'count'>,
    segment: string,
  ): Promise<void> =>
    decodeRunAsync(
      buf,
      offset,
      run,
      { safe: head.safe, device: head.device, rp: head.rp, segment },
      keys,
      (first, plains) => writeBlocks(first, plains),
      input.allowDamaged
        ? (first, count, reason) => damaged.push({ first, count, segment, reason })
        : undefined,
    );

  const fullRange = async (range: PlanRange): Promise<void> => {
    const buf = await input.source.range(range.segment, range.offset, range.length);
    for (const run of range.runs) {
      await decodeAndWrite(buf, run.offset, run, range.segment);
      dataBlocks += run.count;
      progress(run.count * blockSize);
    }
  };

  const deltaRange = async (range: PlanRange): Promise<void> => {
    const entries = await input.source.entries(range.segment);
    for (const run of range.runs) {
      const local = Buffer.alloc(run.count * blockSize);
      await fh.read(local, 0, local.length, run.first * blockSize);
      // runs of consecutive blocks whose local copy differs from the RP
      let i = 0;
      while (i < run.count) {
        const same = (k: number): boolean => {
          const b = run.first + k;
          const plain = local.subarray(k * blockSize, k * blockSize + plainLen(b));
          return blockIdentity(plain, keys?.idKey).equals(entries[run.frame + k]!.identity);
        };
        if (same(i)) {
          unchanged++;
          i++;
          continue;
        }
        let j = i + 1;
        while (j < run.count && !same(j)) j++;
        const a = entries[run.frame + i]!;
        const z = entries[run.frame + j - 1]!;
        const buf = await input.source.range(range.segment, a.offset, z.offset + z.frameLength - a.offset);
        await decodeAndWrite(buf, 0, { first: run.first + i, count: j - i }, range.segment);
        i = j;
      }
      dataBlocks += run.count;
      progress(run.count * blockSize);
    }
  };

  /** Delta mode: blocks no data run covers must read as zero. */
  const zeroHoles = async (page: RestorePlan): Promise<void> => {
    const covered = page.ranges.flatMap((r) => r.runs.map((x) => [x.first, x.first + x.count] as const));
    covered.sort((a, b) => a[0] - b[0]);
    const end = page.nextBlock ?? blocks;
    let at = page.fromBlock;
    const spans: [number, number][] = [];
    for (const [a, b] of covered) {
      if (a > at) spans.push([at, a]);
      at = Math.max(at, b);
    }
    if (at < end) spans.push([at, end]);
    const chunk = Buffer.alloc(ZERO_CHUNK);
    for (const [a, b] of spans) {
      for (let pos = a * blockSize; pos < Math.min(b * blockSize, deviceSize); pos += ZERO_CHUNK) {
        const len = Math.min(ZERO_CHUNK, b * blockSize - pos, deviceSize - pos);
        const { bytesRead } = await fh.read(chunk, 0, len, pos);
        const view = chunk.subarray(0, bytesRead);
        if (view.some((x) => x !== 0)) {
          view.fill(0);
          written += (await fh.write(view, 0, bytesRead, pos)).bytesWritten;
        }
        progress(len);
      }
    }
  };

  try {
    for (let page: RestorePlan | undefined = head; page; ) {
      await forEachLimit(page.ranges, parallel, delta ? deltaRange : fullRange);
      if (delta) await zeroHoles(page);
      const next = await it.next();
      page = next.done ? undefined : next.value;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
  if (work !== input.to) await rename(work, input.to);
  input.onProgress?.(deviceSize, deviceSize);
  return {
    safe: head.safe,
    device: head.device,
    rp: head.rp,
    to: input.to,
    deviceSize,
    delta,
    fetchedBytes: input.source.fetchedBytes,
    writtenBytes: written,
    dataBlocks,
    unchangedBlocks: unchanged,
    damaged,
    durationMs: Date.now() - t0,
  };
}
