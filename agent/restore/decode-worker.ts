/**
 * Worker thread of a restore. It decodes the frames of ranged reads (decrypt, zstd with a reusable
 * context, identity check) and writes the blocks at their offsets in the target; for a delta
 * restore it also compares the target's blocks with the RP's identities, and zeroes blocks that
 * must be zero. So checksums, decompression and I/O run on every core while the main thread keeps
 * the reads in flight. The reads themselves are made here too, of a directory safe's segment
 * files or of presigned URLs, so no segment byte passes through the main thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { alignedBuffer, DirectFile } from '#adapters/direct-io.ts';
import { blockIdentity } from '#core/format/crypto.ts';
import { decodeFrameInto, FrameError, runFrameOffsets } from '#core/format/frame.ts';
import { ZstdDecoder } from '#core/format/zstd-decoder.ts';
import { youngGc } from '../young-gc.ts';
import { fetchRanges, RangeFetchError } from './range-fetch.ts';
import { SegmentFiles } from './segment-files.ts';

export interface DecodeSettings {
  /** The target, opened by the main thread (descriptors are shared by the process's threads). */
  readonly fd: number;
  /** The target opened for direct I/O (O_DIRECT), when its filesystem or device allows it. */
  readonly directFd?: number;
  readonly blockSize: number;
  readonly deviceSize: number;
  readonly dataKey?: Uint8Array;
  readonly idKey?: Uint8Array;
}

/** `count` consecutive blocks from `first`, whose frames lie back to back from `offset` of the buffer. */
export interface DecodeRun {
  readonly first: number;
  readonly count: number;
  readonly offset: number;
}

/**
 * Read `length` bytes at `offset` of `file` (a directory safe's segment file), decode `runs`
 * from them, check them and write them.
 */
export interface DecodeRequest {
  readonly kind: 'decode';
  readonly id: number;
  readonly file: string;
  readonly offset: number;
  readonly length: number;
  readonly runs: readonly DecodeRun[];
  /** Report bad blocks and go on (they are not written); otherwise the first one ends the request. */
  readonly allowDamaged: boolean;
}

/** Delta restore: which of `count` blocks from `first` differ from their identities (32 bytes each)? */
export interface CompareRequest {
  readonly kind: 'compare';
  readonly id: number;
  readonly first: number;
  readonly count: number;
  readonly identities: ArrayBuffer;
}

/** Delta restore: make `count` blocks from `first` zero, writing only where they are not. */
export interface ZeroRequest {
  readonly kind: 'zero';
  readonly id: number;
  readonly first: number;
  readonly count: number;
}

/**
 * Read `ranges` of a segment from `url` (a presigned URL) with one streamed GET, decoding, checking
 * and writing each range's runs as soon as its bytes have arrived.
 */
export interface FetchRequest {
  readonly kind: 'fetch';
  readonly id: number;
  readonly url: string;
  /** The segment id, for messages. */
  readonly segment: string;
  /** Offsets increasing, none overlapping; each range's runs as in a DecodeRequest. */
  readonly ranges: readonly {
    readonly offset: number;
    readonly length: number;
    readonly runs: readonly DecodeRun[];
  }[];
  readonly allowDamaged: boolean;
}

/** Close the segment files this worker opened (before the pool closes). */
export interface CloseRequest {
  readonly kind: 'close';
  readonly id: number;
}

export type WorkerRequest = DecodeRequest | FetchRequest | CompareRequest | ZeroRequest | CloseRequest;

export interface DamagedBlocks {
  readonly first: number;
  readonly count: number;
  readonly reason: string;
}

export interface WorkerResult {
  readonly id: number;
  readonly written: number;
  readonly damaged: DamagedBlocks[];
  /** The first bad block, when not allowDamaged (blocks before it in its run were written). */
  readonly failure?: { readonly block: number; readonly reason: string };
  /** A compare request's answer: [start, end) block spans (relative to `first`) that differ. */
  readonly differing?: [number, number][];
  /** Reading or writing the target failed (a full disk, an I/O error). */
  readonly ioError?: string;
  /** Reading the segment file failed (`readErrorCode`: ENOENT when it is gone). */
  readonly readError?: string;
  readonly readErrorCode?: string;
  /** Bytes a fetch request received (gaps and broken attempts included). */
  readonly fetched?: number;
  /** A fetch request's read failed for good (`status`: the HTTP status, when there was one). */
  readonly fetchError?: { readonly message: string; readonly status?: number };
}

const settings = workerData as DecodeSettings;
const bs = settings.blockSize;
const opts = {
  dataKey: settings.dataKey ? Buffer.from(settings.dataKey) : undefined,
  idKey: settings.idKey ? Buffer.from(settings.idKey) : undefined,
};
const decoder = new ZstdDecoder();
/** The target: direct I/O where it allows (#adapters/direct-io.ts), so a restore does not fill the page cache. */
const io = new DirectFile(settings.fd, settings.directFd);
/** Blocks decoded (or compared, or zeroed) per target write or read: 4 MiB at 64 KiB blocks. */
const GROUP = Math.max(1, Math.floor((4 * 1024 * 1024) / bs));
const plainLength = (block: number): number => Math.min(bs, settings.deviceSize - block * bs);
const bytesOf = (first: number, count: number): number =>
  Math.min(count * bs, settings.deviceSize - first * bs);

/**
 * Output buffers for groups of blocks: while one is being written (on libuv's thread pool; a
 * direct write waits for the disk) the next one fills.
 */
const ring = Array.from({ length: 3 }, () => ({
  out: alignedBuffer(GROUP * bs),
  writing: Promise.resolve(),
}));
let current = 0;
/** Target blocks read for comparison, and zeros to write over holes. */
let scratch: Buffer | undefined;
let zeros: Buffer | undefined;
/** The buffers a delta restore needs (to read target blocks, and to zero them), made on first use. */
const deltaBuffers = (): { scratch: Buffer; zeros: Buffer } => {
  scratch ??= alignedBuffer(GROUP * bs);
  zeros ??= alignedBuffer(GROUP * bs);
  return { scratch, zeros };
};

/** What decoding some runs did: bytes written, blocks skipped as damaged, or the first bad block. */
interface Decoded {
  written: number;
  readonly damaged: DamagedBlocks[];
  failure?: { readonly block: number; readonly reason: string };
}

/**
 * Decodes `runs` from the bytes of a ranged read into the ring; resolves once each write has
 * started, adding the writes to `writes`. Without `allowDamaged` the first bad block ends it
 * (the blocks before it in its run are written).
 */
async function decodeRuns(
  runs: readonly DecodeRun[],
  allowDamaged: boolean,
  buf: Uint8Array,
  writes: Promise<void>[],
  into: Decoded = { written: 0, damaged: [] },
): Promise<Decoded> {
  const { damaged } = into;
  for (const run of runs) {
    let groupFirst = run.first;
    let bytes = 0;
    let n = 0;
    const flush = (): void => {
      if (n > 0) {
        const slot = ring[current]!;
        const w = io.write(slot.out, 0, bytes, groupFirst * bs);
        writes.push(w);
        slot.writing = w.catch(() => {});
        current = (current + 1) % ring.length;
        into.written += bytes;
      }
      bytes = 0;
      n = 0;
    };
    const { offsets, headerError } = runFrameOffsets(buf, run.offset, run.count);
    for (const [k, at] of offsets.entries()) {
      const block = run.first + k;
      if (n === GROUP) flush();
      if (n === 0) {
        await ring[current]!.writing;
        groupFirst = block;
      }
      try {
        decodeFrameInto(buf, at, ring[current]!.out, n * bs, plainLength(block), decoder, opts);
        bytes += plainLength(block);
        n++;
      } catch (e) {
        if (!(e instanceof FrameError)) throw e;
        flush();
        if (!allowDamaged) {
          into.failure = { block, reason: e.message };
          return into;
        }
        damaged.push({ first: block, count: 1, reason: e.message });
      }
    }
    flush();
    if (headerError !== undefined) {
      // without a header the rest of the run cannot be found
      const block = run.first + offsets.length;
      if (!allowDamaged) {
        into.failure = { block, reason: headerError };
        return into;
      }
      damaged.push({ first: block, count: run.count - offsets.length, reason: headerError });
    }
  }
  return into;
}

/** Decodes a request's blocks (the bytes of its ranged read). */
async function decode(req: DecodeRequest, buf: Buffer, writes: Promise<void>[]): Promise<WorkerResult> {
  return { id: req.id, ...(await decodeRuns(req.runs, req.allowDamaged, buf, writes)) };
}

/** Read buffers of fetch requests (one per fetch in flight here), reused. */
const spareReads: Buffer[] = [];
const READ_BUFFER = 8 * 1024 * 1024;

/** Thrown by a fetch's range handler to end the read at a bad block. */
const STOP = Symbol('stop');

/**
 * Fetches the request's ranges and decodes each one as it arrives; the decoding takes its turn
 * with the worker's other requests (`exclusive`), while further bytes wait in the socket.
 */
async function fetchAndDecode(req: FetchRequest, writes: Promise<void>[]): Promise<WorkerResult> {
  const need = Math.max(...req.ranges.map((r) => r.length));
  const spare = spareReads.findIndex((b) => b.length >= need);
  const buf =
    spare >= 0 ? spareReads.splice(spare, 1)[0]! : Buffer.allocUnsafeSlow(Math.max(need, READ_BUFFER));
  const decoded: Decoded = { written: 0, damaged: [] };
  let fetched = 0;
  const result = (extra: Partial<WorkerResult> = {}): WorkerResult => ({
    id: req.id,
    ...decoded,
    fetched,
    ...extra,
  });
  try {
    await fetchRanges(
      req.url,
      req.ranges,
      () => buf,
      async (i, bytes) => {
        await exclusive(() => decodeRuns(req.ranges[i]!.runs, req.allowDamaged, bytes, writes, decoded));
        if (decoded.failure) throw STOP;
      },
      { what: `segment ${req.segment}`, onReceived: (n) => (fetched += n) },
    );
    return result();
  } catch (e) {
    if (e === STOP) return result();
    if (e instanceof RangeFetchError) return result({ fetchError: { message: e.message, status: e.status } });
    throw e;
  } finally {
    spareReads.push(buf);
  }
}

/** Reads the blocks and compares each with its identity. */
async function compare(req: CompareRequest): Promise<WorkerResult> {
  const { scratch } = deltaBuffers();
  const ids = Buffer.from(req.identities);
  const differing: [number, number][] = [];
  for (let g = 0; g < req.count; g += GROUP) {
    const n = Math.min(GROUP, req.count - g);
    await io.read(scratch, 0, bytesOf(req.first + g, n), (req.first + g) * bs);
    for (let k = 0; k < n; k++) {
      const i = g + k;
      const plain = scratch.subarray(k * bs, k * bs + plainLength(req.first + i));
      if (blockIdentity(plain, opts.idKey).equals(ids.subarray(i * 32, i * 32 + 32))) continue;
      const last = differing.at(-1);
      if (last && last[1] === i) last[1] = i + 1;
      else differing.push([i, i + 1]);
    }
  }
  return { id: req.id, written: 0, damaged: [], differing };
}

/** Reads the blocks and writes zeros over each group that is not all zero. */
async function zero(req: ZeroRequest): Promise<WorkerResult> {
  const { scratch, zeros } = deltaBuffers();
  let written = 0;
  for (let g = 0; g < req.count; g += GROUP) {
    const n = Math.min(GROUP, req.count - g);
    const bytes = bytesOf(req.first + g, n);
    await io.read(scratch, 0, bytes, (req.first + g) * bs);
    if (scratch.subarray(0, bytes).equals(zeros.subarray(0, bytes))) continue;
    await io.write(zeros, 0, bytes, (req.first + g) * bs);
    written += bytes;
  }
  return { id: req.id, written, damaged: [] };
}

/** Decryption allocates each block's plaintext; a young collection after each request frees them (young-gc.ts). */
const collectYoung = opts.dataKey ? youngGc() : undefined;

/** A directory safe's segment files, opened (with their read buffers) on the first read. */
let segmentFiles: SegmentFiles | undefined;
const files = (): SegmentFiles => {
  segmentFiles ??= new SegmentFiles();
  return segmentFiles;
};

/**
 * The worker's decoding (and comparing, and zeroing) runs one step at a time, in the order asked:
 * `exclusive` queues a step behind those before it. The read of a segment file, or the fetch of a
 * URL, starts at once, so it overlaps the steps before it.
 */
let working: Promise<unknown> = Promise.resolve();
function exclusive<T>(step: () => Promise<T>): Promise<T> {
  const p = working.then(step);
  working = p.catch(() => undefined);
  return p;
}

/** Requests whose answer is still to be sent (their writes settling). */
const answering = new Set<Promise<void>>();

/** A request's work; `writes` collects every write it starts. */
function work(req: Exclude<WorkerRequest, CloseRequest>, writes: Promise<void>[]): Promise<WorkerResult> {
  if (req.kind === 'fetch') return fetchAndDecode(req, writes);
  const loading = req.kind === 'decode' ? files().read(req.file, req.offset, req.length) : undefined;
  loading?.catch(() => undefined);
  return exclusive(async (): Promise<WorkerResult> => {
    let loaded: Awaited<typeof loading>;
    try {
      loaded = await loading;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      return { id: req.id, written: 0, damaged: [], readError: (e as Error).message, readErrorCode: code };
    }
    if (req.kind !== 'decode') return req.kind === 'compare' ? compare(req) : zero(req);
    try {
      return await decode(req, loaded!.bytes, writes);
    } finally {
      loaded!.release();
    }
  });
}

/**
 * Each request is answered once its writes have settled, while the next one already decodes. A
 * failed read or write (a full disk, an I/O error) is reported and stops the restore.
 */
parentPort!.on('message', (req: WorkerRequest) => {
  const answer = (r: WorkerResult): void => parentPort!.postMessage(r);
  if (req.kind === 'close') {
    void exclusive(async () => {
      await Promise.all(answering);
      segmentFiles?.close();
      answer({ id: req.id, written: 0, damaged: [] });
    });
    return;
  }
  const writes: Promise<void>[] = [];
  const answered = work(req, writes)
    .catch(
      (e: unknown): WorkerResult => ({
        id: req.id,
        written: 0,
        damaged: [],
        ioError: (e as Error).message,
      }),
    )
    .then(async (result) => {
      collectYoung?.();
      const settled = await Promise.allSettled(writes);
      const error = settled.find((x): x is PromiseRejectedResult => x.status === 'rejected');
      answer(error && !result.ioError ? { ...result, ioError: (error.reason as Error).message } : result);
    });
  answering.add(answered);
  void answered.finally(() => answering.delete(answered));
});
