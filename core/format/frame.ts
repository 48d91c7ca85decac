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
import { ZstdDecodeError, type ZstdDecoder } from './zstd-decoder.ts';
import { type ZstdEncoder, zstdBound } from './zstd-encoder.ts';

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

/** Frame bytes beyond the block itself in the worst case (header, and nonce and tag if encrypted). */
export const FRAME_OVERHEAD = FRAME_HEADER_BYTES + NONCE + TAG;

/**
 * Output room for encodeFrameInto of a block of `plainLength` bytes. The frame it writes is at
 * most plainLength + FRAME_OVERHEAD bytes (incompressible blocks are stored raw); the rest is
 * scratch room for the compressor.
 */
export function frameRoom(plainLength: number): number {
  return FRAME_OVERHEAD + zstdBound(plainLength);
}

/**
 * Room for the frames of `blocks` consecutive blocks of at most `blockSize` bytes, `bytes` in
 * all, written back to back by encodeFrameInto.
 */
export function framesRoom(bytes: number, blocks: number, blockSize: number): number {
  return bytes + blocks * FRAME_OVERHEAD + (zstdBound(blockSize) - blockSize);
}

/**
 * zstd(plain) into `out` at `offset` (at most `room` bytes); its length, or undefined when that
 * is not shorter than the block (then it is stored raw).
 */
function compressInto(
  plain: Uint8Array,
  out: Buffer,
  offset: number,
  room: number,
  opts: FrameOptions,
): number | undefined {
  let n: number | undefined;
  if (opts.encoder) n = opts.encoder.compressInto(plain, out, offset, room);
  else {
    const z = zstdCompressSync(plain, {
      chunkSize: Math.max(64 * 1024, plain.length + 1024),
      params: {
        [constants.ZSTD_c_compressionLevel]: opts.zstdLevel ?? 1,
        [constants.ZSTD_c_checksumFlag]: 0,
      },
    });
    if (z.length <= room) n = z.copy(out, offset);
  }
  return n !== undefined && n < plain.length ? n : undefined;
}

/**
 * Encodes one block as a frame into `out` at `offset`; returns the frame's length. `identity` must
 * be blockIdentity(plain, idKey); `out` must have frameRoom(plain.length) bytes from `offset` (the
 * frame itself may be shorter: bytes past it are scratch and may have been overwritten).
 * Unencrypted, nothing is allocated: the compressor writes straight into `out`.
 */
export function encodeFrameInto(
  plain: Uint8Array,
  identity: Uint8Array,
  out: Buffer,
  offset: number,
  opts: FrameOptions = {},
): number {
  if (out.length - offset < frameRoom(plain.length)) throw new RangeError('frame output room too small');
  const encrypted = opts.dataKey !== undefined;
  const bodyAt = offset + FRAME_HEADER_BYTES + (encrypted ? NONCE : 0);
  const z = compressInto(plain, out, bodyAt, out.length - bodyAt - (encrypted ? TAG : 0), opts);
  const useZstd = z !== undefined;
  const bodyLength = useZstd ? z : plain.length;
  const payloadLength = encrypted ? NONCE + bodyLength + TAG : bodyLength;
  out.writeUInt32LE(payloadLength, offset);
  out.writeUInt32LE(plain.length, offset + 4);
  out[offset + 8] = useZstd ? CODEC_ZSTD : CODEC_RAW;
  out[offset + 9] = encrypted ? FLAG_ENCRYPTED : 0;
  out[offset + 10] = 0;
  out[offset + 11] = 0;
  out.set(identity.subarray(0, IDENTITY_BYTES), offset + 12);
  if (!encrypted) {
    if (!useZstd) out.set(plain, bodyAt);
    return FRAME_HEADER_BYTES + payloadLength;
  }
  const nonce = randomBytes(NONCE);
  nonce.copy(out, offset + FRAME_HEADER_BYTES);
  const c = createCipheriv('aes-256-gcm', opts.dataKey!, nonce);
  c.setAAD(out.subarray(offset, offset + FRAME_HEADER_BYTES));
  const body = useZstd ? out.subarray(bodyAt, bodyAt + bodyLength) : plain;
  // GCM is a stream cipher: the ciphertext is as long as the body and replaces it in place
  let o = bodyAt;
  o += c.update(body).copy(out, o);
  o += c.final().copy(out, o);
  c.getAuthTag().copy(out, o);
  return FRAME_HEADER_BYTES + payloadLength;
}

/** Encodes one block as a frame; `identity` must be blockIdentity(plain, idKey). */
export function encodeFrame(plain: Uint8Array, identity: Uint8Array, opts: FrameOptions = {}): Buffer {
  const out = Buffer.allocUnsafe(frameRoom(plain.length));
  const n = encodeFrameInto(plain, identity, out, 0, opts);
  return Buffer.from(out.subarray(0, n));
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
 * The frame at `offset` of `buf` up to its stored bytes: the header, and the payload decrypted
 * (AES-GCM tag checked) but not yet decompressed. Shared by decodeFrame and frame-async.ts.
 */
export function openFrame(
  buf: Uint8Array,
  offset: number,
  opts: DecodeOptions = {},
): { header: FrameHeader; body: Buffer; frameLength: number } {
  const h = readFrameHeader(buf, offset);
  const start = offset + FRAME_HEADER_BYTES;
  if (start + h.payloadLength > buf.length) throw new FrameError('truncated frame payload');
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
  return { header: h, body, frameLength: FRAME_HEADER_BYTES + h.payloadLength };
}

/** zstd options that bound a frame's decompressed size by its header. */
export function zstdDecodeOptions(h: FrameHeader): { maxOutputLength: number; chunkSize: number } {
  return { maxOutputLength: h.plainLength, chunkSize: Math.max(64 * 1024, h.plainLength) };
}

/** Checks a decoded block against its header: length and identity (the checksum of the plain block). */
export function checkPlain(h: FrameHeader, plain: Buffer, idKey: Buffer | undefined): Buffer {
  if (plain.length !== h.plainLength)
    throw new FrameError(`block length ${plain.length}, header says ${h.plainLength}`);
  if (!blockIdentity(plain, idKey).equals(h.identity)) throw new FrameError('checksum mismatch');
  return plain;
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
  const { header: h, body, frameLength } = openFrame(buf, offset, opts);
  let plain: Buffer;
  try {
    plain = h.codec === CODEC_ZSTD ? zstdDecompressSync(body, zstdDecodeOptions(h)) : Buffer.from(body);
  } catch (e) {
    throw new FrameError(`zstd payload does not decode: ${(e as Error).message}`);
  }
  return { plain: checkPlain(h, plain, opts.idKey), frameLength, header: h };
}

/**
 * Decodes the frame at `offset` of `buf` straight into `out` at `outOffset`, where the block must
 * be `plainLength` bytes, and checks its identity: the allocation-free path of the restore's
 * decode workers (decodeFrame's checks, with a reusable decompression context). Returns the
 * frame's total length.
 */
export function decodeFrameInto(
  buf: Uint8Array,
  offset: number,
  out: Buffer,
  outOffset: number,
  plainLength: number,
  decoder: ZstdDecoder,
  opts: DecodeOptions = {},
): number {
  const { header: h, body, frameLength } = openFrame(buf, offset, opts);
  if (h.plainLength !== plainLength)
    throw new FrameError(
      `block length ${h.plainLength} in the header, the device's block here is ${plainLength}`,
    );
  if (out.length - outOffset < plainLength) throw new RangeError('frame output room too small');
  if (h.codec === CODEC_ZSTD) {
    try {
      decoder.decodeInto(body, out, outOffset, plainLength);
    } catch (e) {
      if (e instanceof ZstdDecodeError) throw new FrameError(`zstd payload does not decode: ${e.message}`);
      throw e;
    }
  } else {
    if (body.length !== plainLength)
      throw new FrameError(`block length ${body.length}, header says ${plainLength}`);
    body.copy(out, outOffset);
  }
  if (!blockIdentity(out.subarray(outOffset, outOffset + plainLength), opts.idKey).equals(h.identity))
    throw new FrameError('checksum mismatch');
  return frameLength;
}

/**
 * Where the frames of a run of `count` blocks lie in `buf` from `offset`, found by their headers.
 * A header that is missing or unreadable ends the walk: `headerError` says why, and the blocks
 * from `offsets.length` on cannot be found.
 */
export function runFrameOffsets(
  buf: Uint8Array,
  offset: number,
  count: number,
): { offsets: number[]; headerError?: string } {
  const offsets: number[] = [];
  let at = offset;
  for (let i = 0; i < count; i++) {
    try {
      if (at >= buf.length) throw new FrameError('frame missing from the ranged read (truncated segment?)');
      const h = readFrameHeader(buf, at);
      offsets.push(at);
      at += FRAME_HEADER_BYTES + h.payloadLength;
    } catch (e) {
      if (!(e instanceof FrameError)) throw e;
      return { offsets, headerError: e.message };
    }
  }
  return { offsets };
}
