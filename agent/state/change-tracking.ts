/**
 * Change-tracking state of one device: 8 bytes per block, the first 8 bytes of the block's
 * identity at the last committed RP (all zero for a zero block), behind a 40-byte header:
 *
 *   magic "CDPCTS01" | rp u32 | blockSize u32 | deviceSize u64 | blocks u64 | reserved u64
 *
 * It is read and written sequentially in step with the device scan (memory stays bounded), written
 * to a new file and renamed over the old one only after the RP's manifest is committed.
 */
import { type FileHandle, open, rename, unlink } from 'node:fs/promises';

const MAGIC = 'CDPCTS01';
export const CTS_HEADER = 40;

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

  /** The state of blocks [first, first + count). */
  async read(first: number, count: number): Promise<ArrayBuffer> {
    const b = new Uint8Array(count * 8);
    let got = 0;
    while (got < b.length) {
      const { bytesRead } = await this.h.read(b, got, b.length - got, CTS_HEADER + first * 8 + got);
      if (bytesRead === 0) throw new Error('change-tracking state ended early');
      got += bytesRead;
    }
    return b.buffer;
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

  /** Writes the state of blocks starting at `first`. */
  async write(first: number, state: Uint8Array): Promise<void> {
    await this.h.write(state, 0, state.length, CTS_HEADER + first * 8);
  }

  /** Makes the new state the current one (call after the RP is committed). */
  async commit(): Promise<void> {
    await this.h.sync();
    await this.h.close();
    await rename(this.tmp, this.path);
  }

  async discard(): Promise<void> {
    await this.h.close().catch(() => undefined);
    await unlink(this.tmp).catch(() => undefined);
  }
}
