/**
 * Property: for random histories (1 and 2 devices, encrypted and not), restoring any RP through
 * its plan (small pages and ranges, to exercise paging and splitting) gives the image at that
 * time, into a new file and as a delta restore over another RP's image.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SafeReader } from '#core/safe-reader.ts';
import { localPages } from '../../../agent/restore/plans.ts';
import { runRestore } from '../../../agent/restore/run-restore.ts';
import { countingStore, StoreSource } from '../../../agent/restore/segment-source.ts';
import { runHistory, step } from '../../support/random-history.ts';
import { sha256 } from '../../support/read-image.ts';

describe('backup → restore round trip', () => {
  it('restores every RP exactly, fresh and as a delta over another RP', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 2 }),
        fc.boolean(),
        fc.array(step, { minLength: 1, maxLength: 10 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 5000, max: 40_000 }),
        fc.constantFrom(0, 4096, 65_536),
        async (nDevices, encrypted, steps, maxRanges, maxRangeBytes, gapBytes) => {
          const root = mkdtempSync(join(tmpdir(), 'rr-'));
          try {
            const { h, expected, keys } = await runHistory(root, nDevices, encrypted, steps);
            const counter = { bytes: 0 };
            const reader = new SafeReader(countingStore(h.store, counter), h.safe);
            const restore = (rp: number, d: number, to: string) =>
              runRestore({
                pages: localPages(reader, rp, `dev${d}`, { maxRanges, maxRangeBytes, gapBytes }),
                source: new StoreSource(reader, counter),
                to,
                keysFor: () => keys,
                parallel: 3,
                // random histories may rewrite every block between two RPs: the delta is wanted anyway
                overwrite: true,
              });
            for (let d = 0; d < nDevices; d++) {
              const other = join(root, `other${d}.img`);
              await restore(1, d, other);
              for (let rp = 1; rp <= expected.length; rp++) {
                const fresh = join(root, `r${rp}-${d}.img`);
                const r = await restore(rp, d, fresh);
                expect(r.delta).toBe(false);
                expect(sha256(readFileSync(fresh)), `RP ${rp} dev${d}`).toBe(expected[rp - 1]![d]);
                const dr = await restore(rp, d, other); // delta from the previous RP's image
                expect(dr.delta).toBe(true);
                expect(sha256(readFileSync(other)), `delta RP ${rp} dev${d}`).toBe(expected[rp - 1]![d]);
              }
            }
          } finally {
            rmSync(root, { recursive: true, force: true });
          }
        },
      ),
      { numRuns: 25 },
    );
  }, 180_000);
});
