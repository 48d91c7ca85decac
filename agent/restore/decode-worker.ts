/**
 * Worker thread of a restore. It decodes the frames of ranged reads (decrypt, zstd with a reusable
 * context, identity check) and writes the blocks at their offsets in the target; for a delta
 * restore it also compares the target's blocks with the RP's identities, and zeroes blocks that
 * must be zero. So checksums, decompression and I/O run on every core while the main thread keeps
 * the reads in flight. A request's buffer is moved here and back, never copied.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { alignedBuffer, DirectFile } from '#adapters/direct-io.ts';
import { blockIdentity } from '#core/format/crypto.ts';
import { decodeFrameInto, FrameError, runFrameOffsets } from '#core/format/frame.ts';
import { ZstdDecoder } from '#core/format/zstd-decoder.ts';
import { youngGc } from '../young-gc.ts';
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
 * Decode `runs` from the bytes of a ranged read, check them and write them. The bytes come in
 * `buf`, or the worker reads them from `file` at `offset` (a directory safe's segment file).
 */
export interface DecodeRequest {
  readonly kind: 'decode';
  readonly id: number;
  readonly buf?: ArrayBuffer;
  readonly file?: string;
  readonly offset?: number;
  /** Bytes of the ranged read (`buf` is reused, so it may be longer). */
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

/** Close the segment files this worker opened (before the pool closes). */
export interface CloseRequest {
  readonly kind: 'close';
  readonly id: number;
}

export type WorkerRequest = DecodeRequest | CompareRequest | ZeroRequest | CloseRequest;

export interface DamagedBlocks {
  readonly first: number;
  readonly count: number;
  readonly reason: string;
}

export interface WorkerResult {
  readonly id: number;
  /** A decode request's buffer, moved back for the next read. */
  readonly buf?: ArrayBuffer;
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

/**
 * Decodes the request's blocks (the bytes of its ranged read) into the ring; resolves once each
 * write has started, adding the writes to `writes`.
 */
async function decode(req: DecodeRequest, buf: Buffer, writes: Promise<void>[]): Promise<WorkerResult> {
  const damaged: DamagedBlocks[] = [];
  let written = 0;
  const done = (failure?: WorkerResult['failure']): WorkerResult => ({
    id: req.id,
    buf: req.buf,
    written,
    damaged,
    ...(failure ? { failure } : {}),
  });
  for (const run of req.runs) {
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
        written += bytes;
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
        if (!req.allowDamaged) return done({ block, reason: e.message });
        damaged.push({ first: block, count: 1, reason: e.message });
      }
    }
    flush();
    if (headerError !== undefined) {
      // without a header the rest of the run cannot be found
      const block = run.first + offsets.length;
      if (!req.allowDamaged) return done({ block, reason: headerError });
      damaged.push({ first: block, count: run.count - offsets.length, reason: headerError });
    }
  }
  return done();
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
 * Requests run one after another, each answered once its writes are done; the read of a
 * segment file starts at once, so it overlaps the decoding of the requests before it. A failed
 * read or write (a full disk, an I/O error) is reported and stops the restore.
 */
let working = Promise.resolve();
/** Requests decoded whose writes are still settling. */
const answering = new Set<Promise<void>>();
parentPort!.on('message', (req: WorkerRequest) => {
  if (req.kind === 'close') {
    working = working.then(async () => {
      await Promise.all(answering);
      segmentFiles?.close();
      parentPort!.postMessage({ id: req.id, written: 0, damaged: [] } satisfies WorkerResult);
    });
    return;
  }
  const loading =
    req.kind === 'decode' && req.file !== undefined
      ? files().read(req.file, req.offset ?? 0, req.length)
      : undefined;
  loading?.catch(() => undefined);
  const answer = (r: WorkerResult): void => parentPort!.postMessage(r, r.buf ? [r.buf] : []);
  const failed = (e: unknown): WorkerResult => ({
    id: req.id,
    buf: req.kind === 'decode' ? req.buf : undefined,
    written: 0,
    damaged: [],
    ioError: (e as Error).message,
  });
  working = working.then(async () => {
    let loaded: Awaited<typeof loading>;
    try {
      loaded = await loading;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      answer({ id: req.id, written: 0, damaged: [], readError: (e as Error).message, readErrorCode: code });
      return;
    }
    // every write this request starts, so that it is answered only once all have settled
    const writes: Promise<void>[] = [];
    let result: WorkerResult;
    try {
      if (req.kind === 'decode') {
        const bytes = loaded ? loaded.bytes : Buffer.from(req.buf!, 0, req.length);
        try {
          result = await decode(req, bytes, writes);
        } finally {
          loaded?.release();
        }
      } else result = await (req.kind === 'compare' ? compare(req) : zero(req));
    } catch (e) {
      result = failed(e);
    }
    collectYoung?.();
    // answered once its writes have settled, while the next request already decodes
    const answered = Promise.allSettled(writes).then((settled) => {
      const error = settled.find((x): x is PromiseRejectedResult => x.status === 'rejected');
      answer(error && !result.ioError ? { ...result, ioError: (error.reason as Error).message } : result);
    });
    answering.add(answered);
    void answered.finally(() => answering.delete(answered));
  });
});
