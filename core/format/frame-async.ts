/**
 * Frame decoding with zstd decompression on libuv's thread pool (node:zlib async zstd), so many
 * frames decompress in parallel with the digests and writes of this thread. Same checks and
 * errors as decodeFrame (frame.ts), whose opening and checking steps it shares.
 */
import { promisify } from 'node:util';
import { zstdDecompress } from 'node:zlib';
import {
  CODEC_ZSTD,
  checkPlain,
  type DecodeOptions,
  FrameError,
  openFrame,
  zstdDecodeOptions,
} from './frame.ts';

const zstdDecompressAsync = promisify(zstdDecompress);

/** Decodes the frame at `offset` of `buf`, checking its identity. */
export async function decodeFrameAsync(
  buf: Buffer,
  offset: number,
  opts: DecodeOptions = {},
): Promise<Buffer> {
  const { header: h, body } = openFrame(buf, offset, opts);
  let plain: Buffer;
  try {
    plain =
      h.codec === CODEC_ZSTD ? await zstdDecompressAsync(body, zstdDecodeOptions(h)) : Buffer.from(body);
  } catch (e) {
    throw new FrameError(`zstd payload does not decode: ${(e as Error).message}`);
  }
  // The digest stays on this thread: WebCrypto would copy every block first, costing more than it saves.
  return checkPlain(h, plain, opts.idKey);
}
