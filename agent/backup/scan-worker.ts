/**
 * Worker thread: for each chunk of a device, checks every block for zeros, computes its identity,
 * compares it with the change-tracking state of the last RP, and encodes changed non-zero blocks
 * as frames (zstd, optional AES-256-GCM). Runs off the main thread so hashing and compression of
 * several chunks proceed in parallel with reads and uploads.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { blockIdentity } from '#core/format/crypto.ts';
import { encodeFrame } from '#core/format/frame.ts';

export interface ScanSettings {
  readonly blockSize: number;
  readonly idKey?: Uint8Array;
  readonly dataKey?: Uint8Array;
  readonly zstdLevel: number;
}

export interface ScanRequest {
  readonly id: number;
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
  readonly identity?: Uint8Array;
  readonly frame?: Uint8Array;
}

export interface ScanResult {
  readonly id: number;
  readonly buf: ArrayBuffer;
  /** 8 bytes per block: the new change-tracking state of the chunk. */
  readonly state: ArrayBuffer;
  readonly changed: ChangedBlock[];
}

const settings = workerData as ScanSettings;
const idKey = settings.idKey ? Buffer.from(settings.idKey) : undefined;
const dataKey = settings.dataKey ? Buffer.from(settings.dataKey) : undefined;
const bs = settings.blockSize;

function isZero(b: Buffer): boolean {
  // 8-byte strides through a BigUint64 view when aligned; Buffer.compare against zeros is memcmp-fast too
  return b.equals(zeroBlock.subarray(0, b.length));
}
const zeroBlock = Buffer.alloc(bs);

parentPort!.on('message', (req: ScanRequest) => {
  const data = Buffer.from(req.buf, 0, req.length);
  const blocks = Math.ceil(req.length / bs);
  const state = Buffer.alloc(blocks * 8);
  const old = req.old ? Buffer.from(req.old) : undefined;
  const changed: ChangedBlock[] = [];
  const transfer: ArrayBuffer[] = [req.buf, state.buffer as ArrayBuffer];
  for (let i = 0; i < blocks; i++) {
    const block = data.subarray(i * bs, Math.min((i + 1) * bs, req.length));
    if (isZero(block)) {
      if (!old || !old.subarray(i * 8, i * 8 + 8).equals(zeroBlock.subarray(0, 8)))
        changed.push({ index: i, zero: true });
      continue;
    }
    const identity = blockIdentity(block, idKey);
    identity.copy(state, i * 8, 0, 8);
    if (old && old.subarray(i * 8, i * 8 + 8).equals(identity.subarray(0, 8))) continue;
    const frame = encodeFrame(block, identity, { dataKey, zstdLevel: settings.zstdLevel });
    const f = new Uint8Array(frame.length);
    f.set(frame);
    const id = new Uint8Array(identity);
    transfer.push(f.buffer, id.buffer);
    changed.push({ index: i, zero: false, identity: id, frame: f });
  }
  const result: ScanResult = { id: req.id, buf: req.buf, state: state.buffer as ArrayBuffer, changed };
  parentPort!.postMessage(result, transfer);
});
