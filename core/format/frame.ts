/**
 * A frame stores one block (docs/FORMAT.md "Frame"):
 *
 *   offset size field
 *   0      4    payloadLength   u32 LE  bytes of payload that follow the header
 *   4      4    plainLength     u32 LE  bytes of the block
 *   8      1    codec           0 = raw, 1 = zstd
 *   9      1    flags           bit 0: payload is AES-256-GCM encrypted
 *   10     2    reserved        0
 *   12     32   identity        SHA-256 of the plain block (HMAC-SHA256 under the id key if encrypted)
 *   44     n    payload         codec(plain); if encrypted: nonce(12) || ciphertext || tag(16),
 *                               with the 44 header bytes as additional authenticated data
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { constants, zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import { blockIdentity, IDENTITY_BYTES } from './crypto.ts';
import type { ZstdEncoder } from './zstd-encoder.ts';

export const FRAME_HEADER_BYTES = 44;
export const CODEC_RAW = 0;
export const CODEC_ZSTD = 1;
const FLAG_ENCRYPTED = 1;
const NONCE = 12;
const TAG = 16;

export interface FrameHeader {
  readonly payloadLength: number;
  readonly plainLength: number;
  readonly codec: number;
  readonly encrypted: boolean;
  readonly identity: Buffer;
}

export class FrameError extends Error {}

export interface FrameOptions {
  /** AES-256-GCM key; absent for unencrypted safes. */
  readonly dataKey?: Buffer;
  readonly zstdLevel?: number;
  /** A reusable compressor (scan workers keep one); a one-shot context is used when absent. */
  readonly encoder?: ZstdEncoder;
}

function compress(plain: Uint8Array, opts: FrameOptions): Buffer | undefined {
  if (opts.encoder) return opts.encoder.compress(plain);
  return zstdCompressSync(plain, {
    chunkSize: Math.max(64 * 1024, plain.length + 1024),
    params: { [constants.ZSTD_c_compressionLevel]: opts.zstdLevel ?? 1, [constants.ZSTD_c_checksumFlag]: 0 },
  });
}

/** Encodes one block as a frame; `identity` must be blockIdentity(plain, idKey). */
export function encodeFrame(plain: Uint8Array, identity: Uint8Array, opts: FrameOptions = {}): Buffer {
  const z = compress(plain, opts);
  const useZstd = z !== undefined && z.length < plain.length;
  const body = useZstd ? z : Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength);
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  const encrypted = opts.dataKey !== undefined;
  const payloadLength = encrypted ? NONCE + body.length + TAG : body.length;
  header.writeUInt32LE(payloadLength, 0);
  header.writeUInt32LE(plain.length, 4);
  header[8] = useZstd ? CODEC_ZSTD : CODEC_RAW;
  header[9] = encrypted ? FLAG_ENCRYPTED : 0;
  Buffer.from(identity.buffer, identity.byteOffset, IDENTITY_BYTES).copy(header, 12);
  if (!encrypted) return Buffer.concat([header, body]);
  const nonce = randomBytes(NONCE);
  const c = createCipheriv('aes-256-gcm', opts.dataKey!, nonce);
  c.setAAD(header);
  const ct = Buffer.concat([c.update(body), c.final()]);
  return Buffer.concat([header, nonce, ct, c.getAuthTag()]);
}

export function readFrameHeader(buf: Uint8Array, offset = 0): FrameHeader {
  if (buf.length - offset < FRAME_HEADER_BYTES) throw new FrameError('truncated frame header');
  const b = Buffer.from(buf.buffer, buf.byteOffset + offset, FRAME_HEADER_BYTES);
  const codec = b[8]!;
  if (codec !== CODEC_RAW && codec !== CODEC_ZSTD) throw new FrameError(`unknown codec ${codec}`);
  if (b.readUInt16LE(10) !== 0 || (b[9]! & ~FLAG_ENCRYPTED) !== 0) throw new FrameError('reserved bits set');
  return {
    payloadLength: b.readUInt32LE(0),
    plainLength: b.readUInt32LE(4),
    codec,
    encrypted: (b[9]! & FLAG_ENCRYPTED) !== 0,
    identity: Buffer.from(b.subarray(12, 12 + IDENTITY_BYTES)),
  };
}

export interface DecodeOptions {
  readonly dataKey?: Buffer;
  readonly idKey?: Buffer;
}

/**
 * Decodes the frame at `offset` of `buf`, verifying its identity (the checksum of the plain block).
 * Returns the plain block and the frame's total length.
 */
export function decodeFrame(
  buf: Uint8Array,
  offset: number,
  opts: DecodeOptions = {},
): { plain: Buffer; frameLength: number; header: FrameHeader } {
  const h = readFrameHeader(buf, offset);
  const start = offset + FRAME_HEADER_BYTES;
  const end = start + h.payloadLength;
  if (end > buf.length) throw new FrameError('truncated frame payload');
  let body = Buffer.from(buf.buffer, buf.byteOffset + start, h.payloadLength);
  if (h.encrypted) {
    if (!opts.dataKey) throw new FrameError('frame is encrypted and no key was given');
    if (h.payloadLength < NONCE + TAG) throw new FrameError('encrypted payload too short');
    const d = createDecipheriv('aes-256-gcm', opts.dataKey, body.subarray(0, NONCE));
    d.setAAD(Buffer.from(buf.buffer, buf.byteOffset + offset, FRAME_HEADER_BYTES));
    d.setAuthTag(body.subarray(body.length - TAG));
    try {
      body = Buffer.concat([d.update(body.subarray(NONCE, body.length - TAG)), d.final()]);
    } catch {
      throw new FrameError('authentication failed (wrong key or corrupt frame)');
    }
  }
  let plain: Buffer;
  try {
    plain =
      h.codec === CODEC_ZSTD
        ? zstdDecompressSync(body, {
            maxOutputLength: h.plainLength,
            chunkSize: Math.max(64 * 1024, h.plainLength),
          })
        : Buffer.from(body);
  } catch (e) {
    throw new FrameError(`zstd payload does not decode: ${(e as Error).message}`);
  }
  if (plain.length !== h.plainLength)
    throw new FrameError(`block length ${plain.length}, header says ${h.plainLength}`);
  if (!blockIdentity(plain, opts.idKey).equals(h.identity)) throw new FrameError('checksum mismatch');
  return { plain, frameLength: FRAME_HEADER_BYTES + h.payloadLength, header: h };
}
