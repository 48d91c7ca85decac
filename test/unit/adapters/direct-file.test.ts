import { randomBytes } from 'node:crypto';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { alignedBuffer, DirectFile } from '#adapters/direct-io.ts';

const dir = mkdtempSync(join(tmpdir(), 'direct-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function openBoth(path: string): { fd: number; direct: number | undefined } {
  const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o600);
  let direct: number | undefined;
  try {
    direct = openSync(path, constants.O_RDWR | constants.O_DIRECT);
  } catch {
    direct = undefined; // a filesystem without direct I/O: the buffered path is what runs
  }
  return { fd, direct };
}

describe('DirectFile (direct I/O where aligned, buffered otherwise)', () => {
  it('writes aligned groups and an unaligned tail, and reads them back', async () => {
    const path = join(dir, 'a.img');
    const { fd, direct } = openBoth(path);
    const f = new DirectFile(fd, direct);
    const data = randomBytes(3 * 65536 + 1000); // a device whose last block is short
    const buf = alignedBuffer(data.length);
    data.copy(buf);
    await f.write(buf, 0, data.length, 0);
    const back = alignedBuffer(data.length);
    await f.read(back, 0, data.length, 0);
    expect(back.equals(data)).toBe(true);
    expect(readFileSync(path).equals(data)).toBe(true);
    await expect(f.read(back, 0, 100, data.length)).rejects.toThrow(/the file ended at/);
    closeSync(fd);
    if (direct !== undefined) closeSync(direct);
  });

  it('falls back to buffered I/O when direct I/O refuses the memory (EINVAL), losing nothing', async () => {
    const path = join(dir, 'b.img');
    const { fd, direct } = openBoth(path);
    const f = new DirectFile(fd, direct);
    // a Buffer's own memory is not page-aligned: a direct write of it is refused
    const data = Buffer.concat([Buffer.alloc(16), randomBytes(8192)]).subarray(16);
    await f.write(data, 0, data.length, 4096);
    const back = Buffer.alloc(data.length);
    await f.read(back, 0, data.length, 4096);
    expect(back.equals(data)).toBe(true);
    expect(readFileSync(path).subarray(4096).equals(data)).toBe(true);
    closeSync(fd);
    if (direct !== undefined) closeSync(direct);
  });
});
