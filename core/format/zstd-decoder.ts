/**
 * A zstd decompressor that keeps one decompression context for many frames, the decoding twin of
 * ZstdEncoder (zstd-encoder.ts): `zstdDecompressSync` builds and frees a context and an output
 * buffer on every call, and with 64 KiB blocks that overhead and its garbage cost more than the
 * decompression itself. Each call decodes one complete zstd frame straight into the caller's
 * buffer (the restore writes it to disk from there).
 *
 * It drives the stream's native handle synchronously, as ZstdEncoder does; a test checks it
 * against `zstdDecompressSync`, including corrupt and truncated input, so a Node change that
 * breaks it fails.
 */
import { constants, createZstdDecompress } from 'node:zlib';
import type { NativeEngine } from './zstd-native.ts';

type Engine = NativeEngine<ReturnType<typeof createZstdDecompress>>;

export class ZstdDecodeError extends Error {}

export class ZstdDecoder {
  private engine: Engine = newEngine();

  /**
   * Decodes the zstd frame `input` into `out` at `offset`, which must hold exactly `length` bytes
   * of output: a frame that decodes to more or fewer bytes, or does not decode, is a ZstdDecodeError.
   */
  decodeInto(input: Uint8Array, out: Uint8Array, offset: number, length: number): void {
    const e = this.engine;
    e._handle.reset();
    // one byte of spare room tells "exactly length" from "length and more"
    const room = Math.min(length + 1, out.length - offset);
    e._handle.writeSync(constants.ZSTD_e_end, input, 0, input.length, out, offset, room);
    if (e.errored) {
      e.close();
      this.engine = newEngine();
      throw new ZstdDecodeError(e.errored.message);
    }
    const produced = room - e._writeState[0]!;
    const leftIn = e._writeState[1]!;
    if (produced !== length || leftIn !== 0) {
      throw new ZstdDecodeError(
        produced > length || leftIn !== 0
          ? `decodes to more than the ${length} bytes its header says`
          : `decodes to ${produced} bytes, its header says ${length} (truncated?)`,
      );
    }
  }

  close(): void {
    this.engine.close();
  }
}

function newEngine(): Engine {
  const e = createZstdDecompress() as Engine;
  // errors are read from `errored` after each call; the listener keeps them from being thrown
  e.on('error', () => {});
  return e;
}
