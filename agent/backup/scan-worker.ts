/**
 * Worker thread: for each chunk of a device, checks every block for zeros, computes its identity,
 * compares it with the change-tracking state of the last RP, and encodes changed non-zero blocks
 * as frames (zstd, optional AES-256-GCM). Runs off the main thread so hashing and compression of
 * several chunks proceed in parallel with reads and uploads.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { blockIdentity } from '#core/format/crypto.ts';
import { encodeFrameInto } from '#core/format/frame.ts';
import { ZstdEncoder } from '#core/format/zstd-encoder.ts';
import { youngGc } from '../young-gc.ts';

export interface ScanSettings {
  readonly blockSize: number;
  /** Size of every chunk buffer: framesRoom() of a chunk, so the frames of any chunk fit one. */
  readonly bufferBytes: number;
  readonly idKey?: Uint8Array;
  readonly dataKey?: Uint8Array;
  readonly zstdLevel: number;
}

export interface ScanRequest {
  readonly id: number;
  /** `bufferBytes` bytes; the worker keeps it (as its next frames buffer) and returns another. */
  readonly buf: ArrayBuffer;
  /** Bytes of `buf` that hold device data (the last chunk may be short). */
  readonly length: number;
  /** 8 bytes per block: the identity prefix of each block at the last RP (zeros = zero block); null for a full. */
  readonly old: ArrayBuffer | null;
}

export interface ChangedBlock {
  /** Block index within the chunk. */
  readonly index: number;
  readonly zero: boolean;
  /** Where the block's frame lies in `frames` (non-zero blocks). */
  readonly frameOffset: number;
  readonly frameLength: number;
  /** Where its 32-byte identity lies in `identities` (non-zero blocks). */
  readonly identityOffset: number;
}

export interface ScanResult {
  readonly id: number;
  /**
   * A `bufferBytes` buffer holding the frames of the changed non-zero blocks, back to back. It is
   * not the request's buffer: the worker swaps buffers (it keeps the request's as its next output),
   * so a scan allocates no large buffer and the caller reuses this one for a later read.
   */
  readonly frames: ArrayBuffer;
  /** 8 bytes per block: the new change-tracking state of the chunk. */
  readonly state: ArrayBuffer;
  readonly changed: ChangedBlock[];
  readonly identities: ArrayBuffer;
}

const settings = workerData as ScanSettings;
const idKey = settings.idKey ? Buffer.from(settings.idKey) : undefined;
const dataKey = settings.dataKey ? Buffer.from(settings.dataKey) : undefined;
const bs = settings.blockSize;
const encoder = new ZstdEncoder(settings.zstdLevel, bs);

/**
 * Encrypting allocates each frame's ciphertext (node:crypto has no in-place AES-GCM). Those
 * buffers die young but are memory outside the JS heap, which V8 only collects after some 64 MiB
 * of it per thread (or when the young generation fills, rare here): measured +50 MiB peak RSS
 * with two workers. A young-generation collection after each chunk frees them; it takes well
 * under a millisecond, the chunk several.
 */
const collectYoung = dataKey ? youngGc() : undefined;
/** Where the next chunk's frames go; swapped with each request's buffer. */
let spare = new ArrayBuffer(settings.bufferBytes);

function isZero(b: Buffer): boolean {
  // Buffer.equals is a memcmp
  return b.equals(zeroBlock.subarray(0, b.length));
}
const zeroBlock = Buffer.alloc(bs);

const ZERO_STATE = Buffer.alloc(8);

parentPort!.on('message', (req: ScanRequest) => {
  const data = Buffer.from(req.buf, 0, req.length);
  const blocks = Math.ceil(req.length / bs);
  const state = Buffer.alloc(blocks * 8);
  const old = req.old ? Buffer.from(req.old) : undefined;
  const changed: ChangedBlock[] = [];
  const out = Buffer.from(spare);
  const ids = Buffer.alloc(blocks * 32);
  let framesLength = 0;
  let idCount = 0;
  for (let i = 0; i < blocks; i++) {
    const block = data.subarray(i * bs, Math.min((i + 1) * bs, req.length));
    if (isZero(block)) {
      if (old?.compare(ZERO_STATE, 0, 8, i * 8, i * 8 + 8) !== 0) {
        changed.push({ index: i, zero: true, frameOffset: 0, frameLength: 0, identityOffset: 0 });
      }
      continue;
    }
    const identity = blockIdentity(block, idKey);
    identity.copy(state, i * 8, 0, 8);
    if (old && old.compare(identity, 0, 8, i * 8, i * 8 + 8) === 0) continue;
    const frameLength = encodeFrameInto(block, identity, out, framesLength, { dataKey, encoder });
    changed.push({
      index: i,
      zero: false,
      frameOffset: framesLength,
      frameLength,
      identityOffset: idCount * 32,
    });
    identity.copy(ids, idCount * 32);
    idCount++;
    framesLength += frameLength;
  }
  const result: ScanResult = {
    id: req.id,
    frames: spare,
    state: state.buffer as ArrayBuffer,
    changed,
    identities: ids.buffer as ArrayBuffer,
  };
  spare = req.buf;
  parentPort!.postMessage(result, [result.frames, result.state, result.identities]);
  collectYoung?.();
});
