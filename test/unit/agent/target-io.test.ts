import { randomBytes } from 'node:crypto';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { alignedBuffer } from '#adapters/direct-io.ts';
import { TargetIo } from '../../../agent/restore/target-io.ts';

const dir = mkdtempSync(join(tmpdir(), 'target-io-'));
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

describe('TargetIo (a restore worker writing and reading the target)', () => {
  it('writes aligned groups and an unaligned tail, and reads them back', async () => {
    const path = join(dir, 'a.img');
    const { fd, direct } = openBoth(path);
    const io = new TargetIo(fd, direct);
    const data = randomBytes(3 * 65536 + 1000); // a device whose last block is short
    const buf = alignedBuffer(data.length);
    data.copy(buf);
    await io.write(buf, data.length, 0);
    const back = alignedBuffer(data.length);
    await io.read(back, data.length, 0);
    expect(back.equals(data)).toBe(true);
    expect(readFileSync(path).equals(data)).toBe(true);
    closeSync(fd);
    if (direct !== undefined) closeSync(direct);
  });

  it('falls back to buffered I/O when direct I/O refuses the memory (EINVAL), losing nothing', async () => {
    const path = join(dir, 'b.img');
    const { fd, direct } = openBoth(path);
    const io = new TargetIo(fd, direct);
    // a Buffer's own memory is not page-aligned: a direct write of it is refused
    const data = Buffer.concat([Buffer.alloc(16), randomBytes(8192)]).subarray(16);
    await io.write(data, data.length, 4096);
    const back = Buffer.alloc(data.length);
    await io.read(back, data.length, 4096);
    expect(back.equals(data)).toBe(true);
    expect(readFileSync(path).subarray(4096).equals(data)).toBe(true);
    closeSync(fd);
    if (direct !== undefined) closeSync(direct);
  });
});
