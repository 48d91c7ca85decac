/**
 * Property: for random histories of writes and backups on 1- and 2-device safes, encrypted and
 * not, reading the safe back reproduces every recovery point's images exactly.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SafeReader } from '#core/safe-reader.ts';
import { runHistory, step } from '../../support/random-history.ts';
import { readImage, sha256 } from '../../support/read-image.ts';

describe('backup → read round trip', () => {
  it('reproduces every RP of random histories exactly', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 2 }),
        fc.boolean(),
        fc.array(step, { minLength: 1, maxLength: 12 }),
        async (nDevices, encrypted, steps) => {
          const root = mkdtempSync(join(tmpdir(), 'rt-'));
          try {
            const { h, expected, keys } = await runHistory(root, nDevices, encrypted, steps);
            const reader = new SafeReader(h.store, h.safe, keys);
            expect(await reader.listRps()).toEqual(expected.map((_, i) => i + 1));
            for (let rp = 1; rp <= expected.length; rp++) {
              for (let d = 0; d < nDevices; d++) {
                expect(sha256(await readImage(reader, rp, `dev${d}`)), `RP ${rp} dev${d}`).toBe(
                  expected[rp - 1]![d],
                );
              }
            }
          } finally {
            rmSync(root, { recursive: true, force: true });
          }
        },
      ),
      { numRuns: 25 },
    );
  }, 120_000);
});
