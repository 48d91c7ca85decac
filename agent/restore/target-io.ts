/**
 * A decode worker's I/O on the restore target: writes (and reads) of page-aligned buffers that use
 * direct I/O where they can (#adapters/direct-io.ts), so a restore's data goes straight to the
 * disk instead of being copied into cache pages it will never read again.
 */
import { read, write } from 'node:fs';
import { promisify } from 'node:util';
import { DIRECT_ALIGN, isDirectRefused } from '#adapters/direct-io.ts';

const writeAsync = promisify(write);
const readAsync = promisify(read);

export class TargetIo {
  private readonly fd: number;
  private directFd: number | undefined;

  /** `fd`: the target; `directFd`: the same file opened with O_DIRECT, when allowed. */
  constructor(fd: number, directFd: number | undefined) {
    this.fd = fd;
    this.directFd = directFd;
  }

  /**
   * Writes `length` bytes of `buf` (an alignedBuffer) at `position` (a multiple of 4 KiB): direct
   * where aligned, the unaligned tail (a device's short last block) buffered. A target that
   * refuses direct I/O gets buffered writes from then on.
   */
  async write(buf: Buffer, length: number, position: number): Promise<void> {
    const direct = this.directFd === undefined ? 0 : length - (length % DIRECT_ALIGN);
    if (direct > 0) {
      try {
        await this.each('write', this.directFd!, buf, 0, direct, position);
      } catch (e) {
        if (!isDirectRefused(e)) throw e;
        this.directFd = undefined;
        return this.each('write', this.fd, buf, 0, length, position);
      }
    }
    if (direct < length) await this.each('write', this.fd, buf, direct, length - direct, position + direct);
  }

  /** Reads `length` bytes at `position` into `buf` (an alignedBuffer), as write() does. */
  async read(buf: Buffer, length: number, position: number): Promise<void> {
    const direct = this.directFd === undefined ? 0 : length - (length % DIRECT_ALIGN);
    if (direct > 0) {
      try {
        await this.each('read', this.directFd!, buf, 0, direct, position);
      } catch (e) {
        if (!isDirectRefused(e)) throw e;
        this.directFd = undefined;
        return this.each('read', this.fd, buf, 0, length, position);
      }
    }
    if (direct < length) await this.each('read', this.fd, buf, direct, length - direct, position + direct);
  }

  private async each(
    op: 'read' | 'write',
    fd: number,
    buf: Buffer,
    from: number,
    length: number,
    position: number,
  ): Promise<void> {
    for (let done = 0; done < length; ) {
      const n =
        op === 'write'
          ? (await writeAsync(fd, buf, from + done, length - done, position + done)).bytesWritten
          : (await readAsync(fd, buf, from + done, length - done, position + done)).bytesRead;
      if (n === 0)
        throw new Error(
          `the target ended at ${position + done} (it should be ${position + length} bytes or more)`,
        );
      done += n;
    }
  }
}
