/**
 * The parts of a node:zlib zstd stream that ZstdEncoder and ZstdDecoder drive directly: its native
 * handle's synchronous write (Node's zlib has no public reusable sync API) and the state array
 * where that write leaves the output and input bytes it did not use. Tests of both classes
 * check them against zstdCompressSync and zstdDecompressSync, so a Node change that breaks this
 * fails there.
 */
export interface NativeHandle {
  writeSync(
    flush: number,
    input: Uint8Array,
    inOff: number,
    inLen: number,
    out: Uint8Array,
    outOff: number,
    outLen: number,
  ): void;
  reset(): void;
}

/** A zstd stream with its native parts: `_writeState` is [availOut, availIn] after each write. */
export type NativeEngine<S> = S & { _handle: NativeHandle; _writeState: Uint32Array };
