/**
 * Change-tracking state of one device: 8 bytes per block, the first 8 bytes of the block's
 * identity at the last committed RP (all zero for a zero block), behind a 40-byte header:
 *
 *   magic "CDPCTS01" | rp u32 | blockSize u32 | deviceSize u64 | blocks u64 | reserved u64
 *
 * It is read and written sequentially in step with the device scan, in windows of CTS_WINDOW
 * bytes (memory stays bounded; a scan makes one read and one write per window, not per chunk),
 * written to a new file and renamed over the old one only after the RP's manifest is committed.
 */
import { type FileHandle, open, rename, unlink } from 'node:fs/promises';

const MAGIC = 'CDPCTS01';
export const CTS_HEADER = 40;
/** Bytes of state read or written at once: 8 Ki blocks, 512 MiB of device at 64 KiB blocks. */
const CTS_WINDOW = 64 * 1024;

export interface CtsHeader {
  readonly rp: number;
  readonly blockSize: number;
  readonly deviceSize: number;
}

export class CtsReader {
  private readonly h: FileHandle;
  readonly header: CtsHeader;

  private constructor(h: FileHandle, header: CtsHeader) {
    this.h = h;
    this.header = header;
  }

  /** Opens the state file; undefined when it is missing or unreadable (then it is rebuilt). */
  static async open(path: string): Promise<CtsReader | undefined> {
    let h: FileHandle;
    try {
      h = await open(path, 'r');
    } catch {
      return undefined;
    }
    const b = Buffer.alloc(CTS_HEADER);
    const { bytesRead } = await h.read(b, 0, CTS_HEADER, 0);
    if (bytesRead !== CTS_HEADER || b.toString('latin1', 0, 8) !== MAGIC) {
      await h.close();
      return undefined;
    }
    const header = {
      rp: b.readUInt32LE(8),
      blockSize: b.readUInt32LE(12),
      deviceSize: Number(b.readBigUInt64LE(16)),
    };
    const blocks = Number(b.readBigUInt64LE(24));
    const size = (await h.stat()).size;
    if (blocks !== Math.ceil(header.deviceSize / header.blockSize) || size !== CTS_HEADER + blocks * 8) {
      await h.close();
      return undefined;
    }
    return new CtsReader(h, header);
  }

  /** The window of state last read: blocks [cachedFirst, cachedFirst + cached.length / 8). */
  private cached: Buffer | undefined;
  private cachedFirst = 0;

  /** The state of blocks [first, first + count), in a new buffer of its own. */
  async read(first: number, count: number): Promise<ArrayBuffer> {
    const c = this.cached;
    if (!c || first < this.cachedFirst || (first + count - this.cachedFirst) * 8 > c.length) {
      const blocks = Math.ceil(this.header.deviceSize / this.header.blockSize);
      const n = Math.min(Math.max(count * 8, CTS_WINDOW), (blocks - first) * 8);
      if (n < count * 8) throw new Error('change-tracking state ended early');
      const b = Buffer.alloc(n);
      let got = 0;
      while (got < n) {
        const { bytesRead } = await this.h.read(b, got, n - got, CTS_HEADER + first * 8 + got);
        if (bytesRead === 0) throw new Error('change-tracking state ended early');
        got += bytesRead;
      }
      this.cached = b;
      this.cachedFirst = first;
    }
    const at = (first - this.cachedFirst) * 8;
    return new Uint8Array(this.cached!.subarray(at, at + count * 8)).buffer;
  }

  close(): Promise<void> {
    return this.h.close();
  }
}

export class CtsWriter {
  private readonly h: FileHandle;
  private readonly tmp: string;
  private readonly path: string;

  private constructor(h: FileHandle, tmp: string, path: string) {
    this.h = h;
    this.tmp = tmp;
    this.path = path;
  }

  static async create(path: string, header: CtsHeader): Promise<CtsWriter> {
    const tmp = `${path}.new`;
    const h = await open(tmp, 'w');
    const b = Buffer.alloc(CTS_HEADER);
    b.write(MAGIC, 0, 'latin1');
    b.writeUInt32LE(header.rp, 8);
    b.writeUInt32LE(header.blockSize, 12);
    b.writeBigUInt64LE(BigInt(header.deviceSize), 16);
    b.writeBigUInt64LE(BigInt(Math.ceil(header.deviceSize / header.blockSize)), 24);
    await h.write(b, 0, CTS_HEADER, 0);
    await h.truncate(CTS_HEADER + Math.ceil(header.deviceSize / header.blockSize) * 8);
    return new CtsWriter(h, tmp, path);
  }

  /** State waiting to be written: blocks from pendingFirst, pendingBytes of `pending`. */
  private readonly pending = Buffer.alloc(CTS_WINDOW);
  private pendingFirst = 0;
  private pendingBytes = 0;

  /** Writes the state of blocks starting at `first` (consecutive writes are gathered into one). */
  async write(first: number, state: Uint8Array): Promise<void> {
    const contiguous = first * 8 === this.pendingFirst * 8 + this.pendingBytes;
    if (!contiguous || this.pendingBytes + state.length > this.pending.length) await this.flush();
    if (state.length > this.pending.length) {
      await this.h.write(state, 0, state.length, CTS_HEADER + first * 8);
      return;
    }
    if (this.pendingBytes === 0) this.pendingFirst = first;
    this.pending.set(state, this.pendingBytes);
    this.pendingBytes += state.length;
  }

  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const n = this.pendingBytes;
    this.pendingBytes = 0;
    await this.h.write(this.pending, 0, n, CTS_HEADER + this.pendingFirst * 8);
  }

  /** Makes the new state the current one (call after the RP is committed). */
  async commit(): Promise<void> {
    await this.flush();
    await this.h.sync();
    await this.h.close();
    await rename(this.tmp, this.path);
  }

  async discard(): Promise<void> {
    await this.h.close().catch(() => undefined);
    await unlink(this.tmp).catch(() => undefined);
  }
}
