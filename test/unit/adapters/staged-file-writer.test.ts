import { randomBytes } from 'node:crypto';
import { constants, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { openDirect } from '#adapters/direct-io.ts';
import { StagedFileWriter } from '#adapters/staged-file-writer.ts';

const dir = mkdtempSync(join(tmpdir(), 'staged-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Writes `chunks` through a StagedFileWriter, direct or buffered; returns the file's bytes and size. */
async function writeThrough(chunks: Uint8Array[], direct: boolean): Promise<{ bytes: Buffer; size: number }> {
  const path = join(dir, `f-${randomBytes(4).toString('hex')}`);
  const fh = await open(path, 'wx');
  const dfh = direct ? await openDirect(path, constants.O_WRONLY) : undefined;
  const w = new StagedFileWriter(fh, dfh);
  for (let i = 0; i < chunks.length; i += 3) await w.write(chunks.slice(i, i + 3));
  const size = await w.finish();
  await dfh?.close();
  await fh.close();
  return { bytes: readFileSync(path), size };
}

describe('StagedFileWriter', () => {
  it('writes exactly the bytes given, in order, whatever the chunk sizes (direct and buffered)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 1_500_000 }), { minLength: 0, maxLength: 8 }),
        fc.boolean(),
        async (sizes, direct) => {
          const chunks = sizes.map((n) => randomBytes(n));
          const { bytes, size } = await writeThrough(chunks, direct);
          const want = Buffer.concat(chunks);
          expect(size).toBe(want.length);
          expect(bytes.equals(want)).toBe(true);
        },
      ),
      { numRuns: 25 },
    );
  });
});

describe('StagedFileWriter when a write fails', () => {
  it('reports the error from write or finish, and abort waits for every write it started', async () => {
    const path = join(dir, `ro-${randomBytes(4).toString('hex')}`);
    await (await open(path, 'wx')).close();
    // a read-only descriptor: every write fails (EBADF), as a full or failing disk would
    const fh = await open(path, 'r');
    const w = new StagedFileWriter(fh, undefined);
    const failed = (async () => {
      for (let i = 0; i < 5; i++) await w.write([randomBytes(1024 * 1024)]);
      await w.finish();
    })();
    await expect(failed).rejects.toThrow(/EBADF/);
    await w.abort();
    await fh.close();
    expect(readFileSync(path).length).toBe(0);
  });
});
