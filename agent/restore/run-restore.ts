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
import { openDirect } from '#adapters/direct-io.ts';
import { ByteCursor } from '#core/bytes.ts';
import { forEachLimit, TaskLimiter } from '#core/concurrency.ts';
import { NotFoundError } from '#core/errors.ts';
import type { SafeKeys } from '#core/format/crypto.ts';
import { segmentKey } from '#core/keys.ts';
import { type PlanRange, type RestorePlan, streamSpans } from '#core/restore-plan.ts';
import { CorruptBlockError } from '#core/safe-reader.ts';
import { WorkerPool } from '../worker-pool.ts';
import { BufferPool } from './buffer-pool.ts';
import type { DecodeRun, DecodeSettings, WorkerRequest, WorkerResult } from './decode-worker.ts';
import { ResumeBudget } from './range-fetch.ts';
import { type SegmentSource, UrlFetchError } from './segment-source.ts';

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

/** Blocks per request when zeroing holes (a delta restore): 64 MiB at 64 KiB blocks. */
const ZERO_BLOCKS = 1024;
/** Read buffers hold a plan's largest ranged read (core/restore-plan.ts maxRangeBytes). */
const READ_BUFFER = 8 * 1024 * 1024;

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
  const parallel = Math.max(1, Math.floor(input.parallel ?? 8));
  if (!Number.isFinite(parallel)) throw new RangeError(`parallel must be a number, not ${input.parallel}`);
  const it = input.pages[Symbol.asyncIterator]();
  const firstPage = await it.next();
  if (firstPage.done) throw new Error('the restore plan is empty');
  const head = firstPage.value;
  const { blockSize, deviceSize } = head;
  const keys = input.keysFor?.(head);
  const blocks = Math.ceil(deviceSize / blockSize);
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
  const submit = async (req: WorkerRequest, transfer: ArrayBuffer[]): Promise<WorkerResult> => {
    let r: WorkerResult;
    try {
      r = await pool.submit(req, transfer);
    } catch (e) {
      if (req.kind === 'decode' && req.buf) buffers.lost();
      throw e;
    }
    if (r.buf) buffers.give(r.buf);
    if (r.ioError) throw new Error(`restoring into ${work}: ${r.ioError}`);
    written += r.written;
    return r;
  };

  /** Read buffers (for reads this thread makes), each moved to a worker with its bytes and back. */
  const buffers = new BufferPool(parallel + 2, READ_BUFFER);
  const read = async (segment: string, offset: number, length: number): Promise<ArrayBuffer> => {
    const buf = await buffers.take(length);
    try {
      await input.source.range(segment, offset, length, new Uint8Array(buf, 0, length));
    } catch (e) {
      buffers.give(buf);
      throw e;
    }
    return buf;
  };

  /**
   * A worker fetches `ranges` of `segment` from `url` itself (one streamed GET) and decodes,
   * checks and writes each range's runs as its bytes arrive.
   */
  const fetchVia = async (
    segment: string,
    url: string,
    ranges: readonly { offset: number; length: number; runs: readonly DecodeRun[] }[],
  ): Promise<void> => {
    const r = await submit(
      {
        kind: 'fetch',
        id: requests++,
        url,
        segment,
        ranges: ranges.map(({ offset, length, runs }) => ({ offset, length, runs })),
        allowDamaged,
      },
      [],
    );
    input.source.counted?.(r.fetched ?? 0);
    if (r.fetchError?.status === 404) {
      // gone since the plan was made (a compaction's garbage collection, or damage)
      throw new NotFoundError(`segment ${segment} of safe ${head.safe}`, {
        key: segmentKey(head.safe, segment),
      });
    }
    if (r.fetchError) throw new UrlFetchError(r.fetchError.message, true);
    decoded(segment, r);
  };

  /**
   * The bytes at `offset` of `segment` (read here, or by the worker itself from a local segment
   * file or a URL); a worker decodes `runs` from them, checks and writes them.
   */
  const fetchAndWrite = async (
    segment: string,
    offset: number,
    length: number,
    runs: readonly DecodeRun[],
  ): Promise<void> => {
    const url =
      input.source.localFile?.(segment) === undefined ? await input.source.url?.(segment) : undefined;
    if (url !== undefined) return fetchVia(segment, url, [{ offset, length, runs }]);
    const file = input.source.localFile?.(segment);
    if (file !== undefined) {
      const r = await submit(
        {
          kind: 'decode',
          id: requests++,
          file,
          offset,
          length,
          runs,
          allowDamaged,
        },
        [],
      );
      if (r.readErrorCode === 'ENOENT') {
        // gone since the plan was made (a compaction's garbage collection, or damage)
        throw new NotFoundError(`segment ${segment} of safe ${head.safe}`, {
          key: segmentKey(head.safe, segment),
          path: file,
        });
      }
      if (r.readError) throw new Error(`segment ${segment}: ${r.readError}`);
      input.source.counted?.(length);
      return decoded(segment, r);
    }
    return decodeBuffer(segment, await read(segment, offset, length), length, runs);
  };

  /** A worker decodes `runs` from the `length` bytes read into `buf`, checks and writes them. */
  const decodeBuffer = async (
    segment: string,
    buf: ArrayBuffer,
    length: number,
    runs: readonly DecodeRun[],
  ): Promise<void> => {
    decoded(
      segment,
      await submit({ kind: 'decode', id: requests++, buf, length, runs, allowDamaged }, [buf]),
    );
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
   * Ranges of one segment read with one streamed request (core/restore-plan.ts streamSpans): each
   * range goes to a worker as soon as its bytes have arrived. A stream that breaks is opened again
   * from the first range not yet read, a few times. A source with URLs (presigned) is read by the
   * worker itself, which does the same (range-fetch.ts).
   */
  const streamSpan = async (span: readonly PlanRange[]): Promise<void> => {
    const segment = span[0]!.segment;
    const url = await input.source.url?.(segment);
    if (url !== undefined) {
      await fetchVia(segment, url, span);
      for (const range of span) counted(range);
      return;
    }
    const last = span[span.length - 1]!;
    const decoding: Promise<void>[] = [];
    const budget = new ResumeBudget();
    let next = 0;
    let streamError: unknown;
    try {
      while (next < span.length) {
        const start = span[next]!.offset;
        let cursor: ByteCursor | undefined;
        try {
          const chunks = await input.source.stream(segment, start, last.offset + last.length - start);
          cursor = new ByteCursor(chunks, `segment ${segment} from ${start}`);
          for (; next < span.length; next++) {
            const range = span[next]!;
            await cursor.skip(range.offset - start - cursor.position);
            const buf = await buffers.take(range.length);
            try {
              await cursor.fill(new Uint8Array(buf, 0, range.length));
            } catch (e) {
              buffers.give(buf);
              throw e;
            }
            const p = decodeBuffer(segment, buf, range.length, range.runs).then(() => counted(range));
            p.catch(() => undefined); // awaited below
            decoding.push(p);
          }
        } catch (e) {
          const final = e instanceof NotFoundError || (e instanceof UrlFetchError && e.final);
          if (final || budget.exhausted(next)) throw e;
        } finally {
          await cursor?.close().catch(() => undefined);
        }
      }
    } catch (e) {
      streamError = e;
    }
    // every decode settles before this span ends, in success or failure
    const failed = (await Promise.allSettled(decoding)).find((x) => x.status === 'rejected');
    if (failed) throw failed.reason;
    if (streamError !== undefined) throw streamError;
  };

  /** A new target: local segment files range by range (workers read them), remote ones streamed. */
  const fullPage = async (page: RestorePlan): Promise<void> => {
    const local: PlanRange[] = [];
    const remote: PlanRange[] = [];
    for (const r of page.ranges) (input.source.localFile?.(r.segment) !== undefined ? local : remote).push(r);
    const units: (() => Promise<void>)[] = [
      ...local.map((r) => async () => {
        await fetchAndWrite(r.segment, r.offset, r.length, r.runs);
        counted(r);
      }),
      ...streamSpans(remote).map((span) => () => streamSpan(span)),
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
        await fetchAndWrite(range.segment, a.offset, z.offset + z.frameLength - a.offset, [
          { first: run.first + i, count: j - i, offset: 0 },
        ]);
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
      await submit({ kind: 'zero', id: requests++, first: a, count: b - a }, []);
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
