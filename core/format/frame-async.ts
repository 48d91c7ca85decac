/**
 * Frame decoding with zstd decompression on libuv's thread pool (node:zlib async zstd), so many
 * frames decompress in parallel with the digests and writes of this thread. Same checks and
 * errors as decodeFrame (frame.ts).
 */
import { createDecipheriv } from 'node:crypto';
import { promisify } from 'node:util';
import { zstdDecompress } from 'node:zlib';
import { blockIdentity } from './crypto.ts';
import { CODEC_ZSTD, type DecodeOptions, FRAME_HEADER_BYTES, FrameError, readFrameHeader } from './frame.ts';

const zstdDecompressAsync = promisify(zstdDecompress);
const NONCE = 12;
const TAG = 16;
/** Decodes the frame at `offset` of `buf` (header already known to be readable), checking its identity. */
export async function decodeFrameAsync(
  buf: Buffer,
  offset: number,
  opts: DecodeOptions = {},
): Promise<Buffer> {
  const h = readFrameHeader(buf, offset);
  const start = offset + FRAME_HEADER_BYTES;
  if (start + h.payloadLength > buf.length) throw new FrameError('truncated frame payload');
  let body = buf.subarray(start, start + h.payloadLength);
  if (h.encrypted) {
    if (!opts.dataKey) throw new FrameError('frame is encrypted and no key was given');
    if (h.payloadLength < NONCE + TAG) throw new FrameError('encrypted payload too short');
    const d = createDecipheriv('aes-256-gcm', opts.dataKey, body.subarray(0, NONCE));
    d.setAAD(buf.subarray(offset, start));
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
        ? await zstdDecompressAsync(body, {
            maxOutputLength: h.plainLength,
            chunkSize: Math.max(64 * 1024, h.plainLength),
          })
        : Buffer.from(body);
  } catch (e) {
    throw new FrameError(`zstd payload does not decode: ${(e as Error).message}`);
  }
  if (plain.length !== h.plainLength)
    throw new FrameError(`block length ${plain.length}, header says ${h.plainLength}`);
  // The digest stays on this thread: WebCrypto would copy every block first, costing more than it saves.
  if (!blockIdentity(plain, opts.idKey).equals(h.identity)) throw new FrameError('checksum mismatch');
  return plain;
}
