/**
 * A decode worker's reads of a directory safe's segment files: direct I/O into page-aligned
 * buffers (#adapters/direct-io.ts), so a restore from a local safe neither copies the segments
 * through the main thread nor fills the page cache with them. Two read buffers: one is read into
 * while the other's bytes are decoded. Open files are kept (a few dozen at most) until `close`.
 */
import { closeSync, constants, openSync, read } from 'node:fs';
import { promisify } from 'node:util';
import { alignedBuffer, DIRECT_ALIGN, isDirectRefused } from '#adapters/direct-io.ts';

const readAsync = promisify(read);
/** A plan's largest ranged read (core/restore-plan.ts maxRangeBytes) and the alignment around it. */
const READ_BYTES = 8 * 1024 * 1024 + 2 * DIRECT_ALIGN;
const OPEN_FILES = 32;

interface OpenFile {
  readonly fd: number;
  direct: number | undefined;
  /** Reads in progress: a file is never closed under one (its descriptor could be reused). */
  reading: number;
}

export class SegmentFiles {
  private readonly open = new Map<string, OpenFile>();
  private readonly idle: Buffer[] = [alignedBuffer(READ_BYTES), alignedBuffer(READ_BYTES)];
  private readonly waiting: ((b: Buffer) => void)[] = [];

  /** The `length` bytes at `offset` of `path`, in a read buffer given back with `release`. */
  async read(path: string, offset: number, length: number): Promise<{ bytes: Buffer; release(): void }> {
    // direct I/O reads whole aligned blocks around the range
    const start = offset - (offset % DIRECT_ALIGN);
    const end = Math.ceil((offset + length) / DIRECT_ALIGN) * DIRECT_ALIGN;
    let buf = await this.take();
    if (buf.length < end - start) {
      this.give(buf);
      buf = alignedBuffer(end - start); // a range larger than plans make: once, not kept
    }
    const release = () => {
      if (buf.length === READ_BYTES) this.give(buf);
    };
    let f: OpenFile;
    try {
      f = this.file(path);
    } catch (e) {
      release();
      throw e;
    }
    try {
      let at = 0;
      if (f.direct !== undefined) {
        try {
          at = await readFully(f.direct, buf, end - start, start, offset + length - start);
        } catch (e) {
          if (!isDirectRefused(e)) throw e;
          f.direct = undefined;
        }
      }
      if (f.direct === undefined) {
        at = (await readFully(f.fd, buf.subarray(offset - start), length, offset, length)) + (offset - start);
      }
      const got = Math.max(0, Math.min(length, at - (offset - start)));
      if (got < length)
        throw new Error(`${path}: range ${offset}+${length} is past the end of the file (truncated?)`);
      return { bytes: buf.subarray(offset - start, offset - start + length), release };
    } catch (e) {
      release();
      throw e;
    } finally {
      f.reading--;
      this.evict();
    }
  }

  /** Closes every file (the worker's requests are all answered by then). */
  close(): void {
    for (const f of this.open.values()) closeFile(f);
    this.open.clear();
  }

  /** The open file at `path`, counted as being read (the caller decrements `reading`). */
  private file(path: string): OpenFile {
    let f = this.open.get(path);
    if (f) {
      // most recently used last
      this.open.delete(path);
      this.open.set(path, f);
      f.reading++;
      return f;
    }
    const fd = openSync(path, 'r');
    let direct: number | undefined;
    try {
      direct =
        constants.O_DIRECT === undefined
          ? undefined
          : openSync(path, constants.O_RDONLY | constants.O_DIRECT);
    } catch {
      direct = undefined;
    }
    f = { fd, direct, reading: 1 };
    this.open.set(path, f);
    this.evict();
    return f;
  }

  /** Closes the least recently used files beyond OPEN_FILES that no read is using. */
  private evict(): void {
    for (const [path, f] of this.open) {
      if (this.open.size <= OPEN_FILES) return;
      if (f.reading > 0) continue;
      this.open.delete(path);
      closeFile(f);
    }
  }

  private take(): Promise<Buffer> {
    const b = this.idle.pop();
    return b ? Promise.resolve(b) : new Promise((resolve) => this.waiting.push(resolve));
  }

  private give(b: Buffer): void {
    const next = this.waiting.shift();
    if (next) next(b);
    else this.idle.push(b);
  }
}

/** Reads up to `length` bytes at `position` into `buf`, stopping at the end of the file once `enough` are in; returns the bytes read. */
async function readFully(
  fd: number,
  buf: Buffer,
  length: number,
  position: number,
  enough: number,
): Promise<number> {
  let at = 0;
  while (at < length) {
    const { bytesRead } = await readAsync(fd, buf, at, length - at, position + at);
    if (bytesRead === 0) break;
    at += bytesRead;
    if (at >= enough && at % DIRECT_ALIGN !== 0) break; // a short read at the end of the file
  }
  return at;
}

function closeFile(f: OpenFile): void {
  closeSync(f.fd);
  if (f.direct !== undefined) closeSync(f.direct);
}
