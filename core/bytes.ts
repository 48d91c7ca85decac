/** Reading into caller-owned buffers (ObjectStore.getRange's `into`, restore's reused read buffers). */

/** The first `length` bytes of `into` as a Buffer (no copy); a RangeError when it is too small. */
export function viewOf(into: Uint8Array, length: number): Buffer {
  if (into.byteLength < length)
    throw new RangeError(`read buffer of ${into.byteLength} bytes, need ${length}`);
  return Buffer.from(into.buffer, into.byteOffset, length);
}

/**
 * Copies a stream of chunks into `into`, which must end up exactly full: a longer or shorter
 * stream is an error naming `what`. Returns `into`.
 */
export async function readStreamInto(
  chunks: AsyncIterable<Uint8Array>,
  into: Buffer,
  what: string,
): Promise<Buffer> {
  let at = 0;
  for await (const c of chunks) {
    if (at + c.byteLength > into.length)
      throw new Error(`${what}: more than the ${into.length} bytes asked for`);
    into.set(c, at);
    at += c.byteLength;
  }
  if (at !== into.length) throw new Error(`${what}: got ${at} bytes, asked ${into.length} (truncated?)`);
  return into;
}
