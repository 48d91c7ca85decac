import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { CtsReader, CtsWriter } from '../../../agent/state/change-tracking.ts';

const dir = mkdtempSync(join(tmpdir(), 'cts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('change-tracking state (read and written in windows)', () => {
  it('reads back exactly what was written, whatever the write pattern and read pieces', async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        // a device of up to 40 Ki blocks: several 8 Ki-block windows
        fc.integer({ min: 1, max: 40_000 }),
        fc.array(fc.integer({ min: 1, max: 9000 }), { minLength: 1, maxLength: 20 }),
        fc.array(fc.integer({ min: 1, max: 12_000 }), { minLength: 1, maxLength: 20 }),
        fc.boolean(),
        async (blocks, writeSizes, readSizes, skipSome) => {
          const path = join(dir, `s${n++}.cts`);
          const header = { rp: 3, blockSize: 4096, deviceSize: blocks * 4096 - 100 };
          const model = Buffer.alloc(blocks * 8);
          const w = await CtsWriter.create(path, header);
          let at = 0;
          for (let i = 0; at < blocks; i++) {
            const count = Math.min(writeSizes[i % writeSizes.length]!, blocks - at);
            // with skipSome, every third piece is left unwritten (zeros), as a changed-list run leaves stretches
            if (!(skipSome && i % 3 === 2)) {
              const state = Buffer.alloc(count * 8);
              for (let k = 0; k < state.length; k++) state[k] = (at * 8 + k * 7 + i) & 0xff;
              await w.write(at, state);
              state.copy(model, at * 8);
            }
            at += count;
          }
          await w.commit();
          const r = await CtsReader.open(path);
          expect(r?.header).toEqual(header);
          let first = 0;
          for (let i = 0; first < blocks; i++) {
            const count = Math.min(readSizes[i % readSizes.length]!, blocks - first);
            const got = Buffer.from(await r!.read(first, count));
            expect(got.equals(model.subarray(first * 8, (first + count) * 8))).toBe(true);
            first += count;
          }
          // a read behind the window, and one past the end
          expect(Buffer.from(await r!.read(0, 1)).equals(model.subarray(0, 8))).toBe(true);
          await expect(r!.read(blocks - 1, 2)).rejects.toThrow(/ended early/);
          await r!.close();
        },
      ),
      { numRuns: 40 },
    );
  }, 120_000);
});
