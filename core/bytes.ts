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

/**
 * Takes a stream of chunks apart into consecutive pieces of chosen lengths (the ranges of one
 * streamed read), copying each piece into a caller's buffer as its bytes arrive.
 */
export class ByteCursor {
  private readonly it: AsyncIterator<Uint8Array>;
  private readonly what: string;
  private chunk: Uint8Array = new Uint8Array(0);
  private at = 0;
  /** Bytes consumed so far (filled or skipped). */
  position = 0;

  constructor(chunks: AsyncIterable<Uint8Array>, what: string) {
    this.it = chunks[Symbol.asyncIterator]();
    this.what = what;
  }

  private async next(): Promise<void> {
    const r = await this.it.next();
    if (r.done) throw new Error(`${this.what}: the stream ended after ${this.position} bytes (truncated?)`);
    this.chunk = r.value;
    this.at = 0;
  }

  /** Fills `into` completely with the stream's next bytes. */
  async fill(into: Uint8Array): Promise<void> {
    let got = 0;
    while (got < into.byteLength) {
      if (this.at === this.chunk.byteLength) await this.next();
      const n = Math.min(into.byteLength - got, this.chunk.byteLength - this.at);
      into.set(this.chunk.subarray(this.at, this.at + n), got);
      this.at += n;
      got += n;
      this.position += n;
    }
  }

  /** Passes over the stream's next `n` bytes. */
  async skip(n: number): Promise<void> {
    if (n < 0) throw new RangeError(`${this.what}: cannot go back ${-n} bytes (overlapping reads?)`);
    while (n > 0) {
      if (this.at === this.chunk.byteLength) await this.next();
      const k = Math.min(n, this.chunk.byteLength - this.at);
      this.at += k;
      n -= k;
      this.position += k;
    }
  }

  /** Waits for the stream to end where the cursor is: bytes beyond it are an error. */
  async end(): Promise<void> {
    if (this.at < this.chunk.byteLength || !(await this.it.next()).done)
      throw new Error(`${this.what}: more bytes than asked for after ${this.position}`);
  }

  /** Ends the read early (the rest of the stream is not needed). */
  async close(): Promise<void> {
    await this.it.return?.();
  }
}

/** The whole object's size from an HTTP `Content-Range` ("bytes <first>-<last>/<size>"), if it says. */
export function contentRangeSize(header: string | null | undefined): number | undefined {
  const total = /\/(\d+)$/.exec(header ?? '')?.[1];
  return total === undefined ? undefined : Number(total);
}
