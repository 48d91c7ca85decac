import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { SegmentFiles } from '../../../agent/restore/segment-files.ts';

const dir = mkdtempSync(join(tmpdir(), 'segfiles-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const data = randomBytes(3 * 1024 * 1024 + 123);
const path = join(dir, 'a.seg');
writeFileSync(path, data);

describe('SegmentFiles (a restore worker reading segment files, direct I/O where allowed)', () => {
  it('returns exactly the bytes of any range, aligned or not, up to the end of the file', async () => {
    const files = new SegmentFiles();
    await fc.assert(
      fc.asyncProperty(
        fc.nat(data.length - 1),
        fc.integer({ min: 1, max: 2 * 1024 * 1024 }),
        async (offset, n) => {
          const length = Math.min(n, data.length - offset);
          const r = await files.read(path, offset, length);
          expect(r.bytes.equals(data.subarray(offset, offset + length))).toBe(true);
          r.release();
        },
      ),
      { numRuns: 60 },
    );
    files.close();
  });

  it('serves more concurrent reads than it has buffers, each once a buffer is given back', async () => {
    const files = new SegmentFiles();
    const reads = [0, 5000, 70000, 1 << 20, 2 << 20].map(async (o) => {
      const r = await files.read(path, o, 4096);
      const same = r.bytes.equals(data.subarray(o, o + 4096));
      r.release();
      return same;
    });
    expect(await Promise.all(reads)).toEqual([true, true, true, true, true]);
    files.close();
  });

  it('reads the right file when many more files are read at once than it keeps open', async () => {
    const files = new SegmentFiles();
    const paths = Array.from({ length: 40 }, (_, i) => {
      const p = join(dir, `many-${i}.seg`);
      writeFileSync(p, Buffer.alloc(10_000, i));
      return p;
    });
    // 40 reads in flight over 2 buffers and at most 32 open files; each checks its own bytes
    const reads = paths.map(async (p, i) => {
      const r = await files.read(p, 100, 5000);
      const right = r.bytes.every((x) => x === i);
      await new Promise((resolve) => setTimeout(resolve, 1));
      r.release();
      return right;
    });
    expect((await Promise.all(reads)).every(Boolean)).toBe(true);
    files.close();
  });

  it('names a range past the end of the file (a truncated segment) and a missing file', async () => {
    const files = new SegmentFiles();
    await expect(files.read(path, data.length - 10, 20)).rejects.toThrow(/a\.seg: range .* past the end/);
    await expect(files.read(join(dir, 'nope.seg'), 0, 10)).rejects.toThrow(/ENOENT/);
    // the failed reads gave their buffers back
    const r = await files.read(path, 0, 10);
    expect(r.bytes.equals(data.subarray(0, 10))).toBe(true);
    files.close();
  });
});
