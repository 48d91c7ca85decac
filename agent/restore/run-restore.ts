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
import { constants, type FileHandle, open, rename, stat, unlink } from 'node:fs/promises';
import { openDirect } from '#adapters/direct-io.ts';
import { forEachLimit, TaskLimiter } from '#core/concurrency.ts';
import { CdpError, NotFoundError } from '#core/errors.ts';
import type { SafeKeys } from '#core/format/crypto.ts';
import { segmentKey } from '#core/keys.ts';
import { type PlanRange, type RestorePlan, streamSpans } from '#core/restore-plan.ts';
import { CorruptBlockError } from '#core/safe-reader.ts';
import { WorkerPool } from '../worker-pool.ts';
import type { DecodeRun, DecodeSettings, WorkerRequest, WorkerResult } from './decode-worker.ts';
import { type SegmentSource, UrlFetchError } from './segment-source.ts';
import { checkTarget } from './target-check.ts';

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
  /** Decode workers (each decodes, checks and writes blocks). @default the number of cores */
  readonly workers?: number;
  /** Write over an existing `to` even when it is not recognisably an earlier copy (target-check.ts). */
  readonly overwrite?: boolean;
  /** The path the RP was read from on this host: never written over unless `overwrite`. */
  readonly takenFrom?: string;
  onProgress?(doneBytes: number, totalBytes: number): void;
}

export interface DamagedRange {
  readonly first: number;
  readonly count: number;
  readonly segment: string;
  /** The frame number of block `first` in the segment, where known. */
  readonly frame?: number;
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

/** Blocks per request when zeroing holes (a delta restore): 64 MiB at 64 KiB blocks. */
const ZERO_BLOCKS = 1024;
/** A ranged read of a segment, and the runs to decode from its bytes. */
interface ReadRange {
  readonly offset: number;
  readonly length: number;
  readonly runs: readonly DecodeRun[];
}

/** Suffix of a new file while it is being restored; renamed to the target name when complete. */
export const PARTIAL_SUFFIX = '.cdp-partial';

/**
 * Gives the target file the device's size. A filesystem whose largest file is smaller (EFBIG) is
 * named, and a file this restore created for it is removed again.
 */
async function sizeTarget(fh: FileHandle, path: string, deviceSize: number, created: boolean): Promise<void> {
  try {
    await fh.truncate(deviceSize);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EFBIG' && code !== 'EINVAL') throw e;
    await fh.close();
    if (created) await unlink(path).catch(() => undefined);
    throw new CdpError(
      'E_USAGE',
      `${path} cannot be made ${deviceSize} bytes, the size of the device (${code}: larger than its filesystem allows)`,
      { path },
      'restore onto a filesystem that allows files this large, or onto a block device',
    );
  }
}

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
      await sizeTarget(fh, work, deviceSize, false);
      return { fh, delta: true, work };
    }
    const fh = await open(work, constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC, 0o600);
    await sizeTarget(fh, work, deviceSize, true);
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
  await sizeTarget(fh, to, deviceSize, false);
  return { fh, delta: mode === 'auto', work: to };
}

export async function runRestore(input: RestoreInput): Promise<RestoreResult> {
  const t0 = Date.now();
  const parallel = Math.max(1, Math.floor(input.parallel ?? 8));
  if (!Number.isFinite(parallel)) throw new RangeError(`parallel must be a number, not ${input.parallel}`);
  const it = input.pages[Symbol.asyncIterator]();
  const firstPage = await it.next();
  if (firstPage.done) throw new Error('the restore plan is empty');
  const head = firstPage.value;
  const { blockSize, deviceSize } = head;
  const keys = input.keysFor?.(head);
  const blocks = Math.ceil(deviceSize / blockSize);
  await checkTarget(
    { to: input.to, overwrite: input.overwrite, takenFrom: input.takenFrom },
    head,
    input.source,
    keys,
  );
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

  // a second descriptor for direct I/O (adapters/direct-io.ts), where the target allows it
  const direct = await openDirect(work, constants.O_RDWR);
  const settings: DecodeSettings = {
    fd: fh.fd,
    directFd: direct?.fd,
    blockSize,
    deviceSize,
    dataKey: keys?.dataKey,
    idKey: keys?.idKey,
  };
  const pool = new WorkerPool<WorkerRequest, WorkerResult>(
    './decode-worker',
    import.meta.url,
    settings,
    input.workers,
  );
  let requests = 0;
  const allowDamaged = input.allowDamaged === true;
  /** Sends a request to a worker; a failed read or write of the target ends the restore. */
  const submit = async (req: WorkerRequest, transfer: ArrayBuffer[] = []): Promise<WorkerResult> => {
    const r = await pool.submit(req, transfer);
    if (r.ioError) throw new Error(`restoring into ${work}: ${r.ioError}`);
    written += r.written;
    return r;
  };

  const gone = (segment: string, path?: string): NotFoundError =>
    // gone since the plan was made (a compaction's garbage collection, or damage)
    new NotFoundError(`segment ${segment} of safe ${head.safe}`, {
      key: segmentKey(head.safe, segment),
      ...(path ? { path } : {}),
    });

  /** A segment's URL for the workers, when the source has no local file of it. */
  const urlOf = async (segment: string): Promise<string> => {
    const url = await input.source.url?.(segment);
    if (url === undefined) throw new Error(`the restore's source can read no bytes of segment ${segment}`);
    return url;
  };

  /**
   * A worker fetches `ranges` of `segment` itself (one streamed GET of its URL, reopened where it
   * broke: range-fetch.ts) and decodes, checks and writes each range's runs as its bytes arrive.
   */
  const workerFetch = async (segment: string, ranges: readonly ReadRange[]): Promise<void> => {
    const r = await submit({
      kind: 'fetch',
      id: requests++,
      url: await urlOf(segment),
      segment,
      ranges: ranges.map(({ offset, length, runs }) => ({ offset, length, runs })),
      allowDamaged,
    });
    input.source.counted?.(r.fetched ?? 0);
    if (r.fetchError?.status === 404) throw gone(segment);
    if (r.fetchError) throw new UrlFetchError(r.fetchError.message, true);
    decoded(segment, r);
  };

  /** A worker reads a range of a local segment file itself, and decodes, checks and writes its runs. */
  const readFile = async (segment: string, file: string, range: ReadRange): Promise<void> => {
    const r = await submit({ kind: 'decode', id: requests++, file, ...range, allowDamaged });
    if (r.readErrorCode === 'ENOENT') throw gone(segment, file);
    if (r.readError) throw new Error(`segment ${segment}: ${r.readError}`);
    input.source.counted?.(range.length);
    decoded(segment, r);
  };

  /** The bytes at `offset` of `segment`, read by a worker (from its file or its URL), which decodes, checks and writes `runs`. */
  const readAndWrite = async (segment: string, range: ReadRange): Promise<void> => {
    const file = input.source.localFile?.(segment);
    return file !== undefined ? readFile(segment, file, range) : workerFetch(segment, [range]);
  };

  const decoded = (segment: string, r: WorkerResult): void => {
    for (const d of r.damaged) damaged.push({ ...d, segment });
    if (r.failure) {
      throw new CorruptBlockError(r.failure.reason, {
        safe: head.safe,
        device: head.device,
        rp: head.rp,
        segment,
        block: r.failure.block,
      });
    }
  };

  const counted = (range: PlanRange): void => {
    const count = range.runs.reduce((n, run) => n + run.count, 0);
    dataBlocks += count;
    progress(count * blockSize);
  };

  /**
   * A new target: local segment files range by range, remote segments a span of ranges at a time
   * in one streamed read (core/restore-plan.ts streamSpans); workers make the reads.
   */
  const fullPage = async (page: RestorePlan): Promise<void> => {
    const local: PlanRange[] = [];
    const remote: PlanRange[] = [];
    for (const r of page.ranges) (input.source.localFile?.(r.segment) !== undefined ? local : remote).push(r);
    const units: (() => Promise<void>)[] = [
      ...local.map((r) => async () => {
        await readAndWrite(r.segment, r);
        counted(r);
      }),
      ...streamSpans(remote).map((span) => async () => {
        await workerFetch(span[0]!.segment, span);
        for (const r of span) counted(r);
      }),
    ];
    // no barrier at the page's end: the next page's reads start as this page's finish
    for (const unit of units) {
      await tasks.run(unit);
      if (tasks.failed) return;
    }
  };

  /** Delta mode: a worker compares the target's blocks with the RP's; only differing ones are fetched. */
  const deltaRange = async (range: PlanRange): Promise<void> => {
    const entries = await input.source.entries(range.segment);
    for (const run of range.runs) {
      const identities = new ArrayBuffer(run.count * 32);
      const ids = Buffer.from(identities);
      for (let k = 0; k < run.count; k++) entries[run.frame + k]!.identity.copy(ids, k * 32);
      const r = await submit(
        { kind: 'compare', id: requests++, first: run.first, count: run.count, identities },
        [identities],
      );
      let differing = 0;
      for (const [i, j] of r.differing ?? []) {
        const a = entries[run.frame + i]!;
        const z = entries[run.frame + j - 1]!;
        await readAndWrite(range.segment, {
          offset: a.offset,
          length: z.offset + z.frameLength - a.offset,
          runs: [{ first: run.first + i, count: j - i, offset: 0 }],
        });
        differing += j - i;
      }
      unchanged += run.count - differing;
      dataBlocks += run.count;
      progress(run.count * blockSize);
    }
  };

  /** Delta mode: blocks no data run covers must read as zero; workers zero those that are not. */
  const zeroHoles = async (page: RestorePlan): Promise<void> => {
    const covered = page.ranges.flatMap((r) => r.runs.map((x) => [x.first, x.first + x.count] as const));
    covered.sort((a, b) => a[0] - b[0]);
    const end = page.nextBlock ?? blocks;
    let at = page.fromBlock;
    const spans: [number, number][] = [];
    const hole = (a: number, b: number): void => {
      for (let x = a; x < b; x += ZERO_BLOCKS) spans.push([x, Math.min(b, x + ZERO_BLOCKS)]);
    };
    for (const [a, b] of covered) {
      if (a > at) hole(at, a);
      at = Math.max(at, b);
    }
    if (at < end) hole(at, end);
    await forEachLimit(spans, parallel, async ([a, b]) => {
      await submit({ kind: 'zero', id: requests++, first: a, count: b - a });
      progress(Math.min(b * blockSize, deviceSize) - a * blockSize);
    });
  };

  const tasks = new TaskLimiter(parallel);
  let upcoming: Promise<IteratorResult<RestorePlan>> | undefined;
  try {
    for (let page: RestorePlan | undefined = head; page; ) {
      // the next page is planned (its segment footers read) while this one is restored
      upcoming = it.next();
      upcoming.catch(() => undefined); // awaited below, or in finally if this page fails
      if (delta) await forEachLimit(page.ranges, parallel, deltaRange);
      else await fullPage(page);
      if (delta) await zeroHoles(page);
      if (tasks.failed) break;
      const next = await upcoming;
      upcoming = undefined;
      page = next.done ? undefined : next.value;
    }
    await tasks.drain();
    await fh.sync();
  } finally {
    await tasks.drain().catch(() => undefined); // nothing still reads or writes past this point
    if (upcoming) {
      // a failed page: let the planning of the next one settle, then end the plan's generator
      await upcoming.catch(() => undefined);
      await it.return?.(undefined).catch(() => undefined);
    }
    await pool.each(() => ({ kind: 'close', id: requests++ })).catch(() => undefined);
    await pool.close();
    await direct?.close();
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
