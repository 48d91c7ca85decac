/**
 * Property (issue 6): random histories of writes, backups, policy changes and compactions, each
 * compaction crashed at a random write first and then rerun → every retained RP restores byte for
 * byte, expired RPs are gone, backups go on on top of the compacted safe, and after garbage
 * collection past the grace period no object is orphaned and none referenced is missing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { referencedKeys } from '#core/compaction/collect-garbage.ts';
import { compactSafe } from '#core/compaction/compact.ts';
import type { SafeKeys } from '#core/format/crypto.ts';
import type { StoredPolicy } from '#core/format/generation.ts';
import { policyKey, safeConfigKey, safePrefix } from '#core/keys.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import { SafeReader } from '#core/safe-reader.ts';
import type { Harness } from '../../../support/backup-harness.ts';
import { FaultyStore, InjectedCrash } from '../../../support/fakes/faulty-store.ts';
import { runHistory, type Step, step } from '../../../support/random-history.ts';
import { sha256 } from '../../../support/read-image.ts';

const HOUR = 3600_000;

async function checkRestores(
  store: ObjectStore,
  safe: string,
  expected: string[][],
  keys: SafeKeys | undefined,
  nDevices: number,
): Promise<number[]> {
  const reader = new SafeReader(store, safe, keys);
  const listed = await reader.listRps();
  for (const rp of listed) {
    for (let d = 0; d < nDevices; d++) {
      const img = await reader.readImage(rp, `dev${d}`);
      expect(sha256(img), `RP ${rp} dev${d}`).toBe(expected[rp - 1]![d]);
    }
  }
  return listed;
}

describe('compaction', () => {
  it('keeps every retained RP restorable through crashes, and leaves no orphans', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 2 }),
        fc.boolean(),
        fc.array(fc.oneof(step, step, step, fc.constant<Step>('compact')), { minLength: 8, maxLength: 40 }),
        fc.array(fc.integer({ min: 0, max: 40 }), { minLength: 8, maxLength: 8 }),
        fc.record({
          last: fc.integer({ min: 1, max: 3 }),
          hourly: fc.integer({ min: 0, max: 2 }),
          daily: fc.integer({ min: 0, max: 1 }),
          weekly: fc.constant(0),
          monthly: fc.constant(0),
        }),
        fc.integer({ min: 0, max: 3 }),
        fc.constantFrom(0.5, 0.95),
        fc.constantFrom(4, 9, 1000),
        async (nDevices, encrypted, steps, crashes, base, maxDeltas, rewriteBelow, shardBlocks) => {
          const root = mkdtempSync(join(tmpdir(), 'cp-'));
          let clock = Date.parse('2026-11-01T00:00:00Z');
          const now = () => new Date(clock);
          let compactions = 0;
          try {
            const compact = async (h: Harness, expected: string[][], keys: SafeKeys | undefined) => {
              const crashAt = crashes[compactions++ % crashes.length]!;
              // policy changes: lock a random old RP now and then
              const policy: StoredPolicy = {
                ...base,
                locked: expected.length > 2 && crashAt % 3 === 0 ? [2] : [],
              };
              const settings = {
                policy,
                maxDeltas,
                rewriteBelow,
                shardBlocks,
                segmentBytes: 48 * 1024,
                graceMs: HOUR,
                owner: 'test',
                now,
              };
              try {
                await compactSafe(new FaultyStore(h.store, crashAt), h.safe, settings);
              } catch (e) {
                if (!(e instanceof InjectedCrash)) throw e;
              }
              // a crash anywhere leaves a view in which everything listed still restores
              await checkRestores(h.store, h.safe, expected, keys, nDevices);
              await compactSafe(h.store, h.safe, settings);
              const listed = await checkRestores(h.store, h.safe, expected, keys, nDevices);
              const reader = new SafeReader(h.store, h.safe, keys);
              const gen = await reader.generation();
              if (gen) {
                // expired RPs are gone from the view and cannot be read
                for (let rp = 1; rp <= gen.upTo; rp++) {
                  if (listed.includes(rp)) continue;
                  await expect(reader.readImage(rp, 'dev0')).rejects.toThrow(/expired/);
                }
                // the chain bound holds for every retained RP
                for (const rp of listed.filter((r) => r <= gen.upTo)) {
                  expect((await reader.chain(rp, 'dev0')).length).toBeLessThanOrEqual(maxDeltas + 1);
                }
              }
              clock += 20 * 60_000;
            };
            const { h, expected, keys } = await runHistory(root, nDevices, encrypted, [...steps, 'compact'], {
              now: () => {
                clock += 17 * 60_000;
                return new Date(clock);
              },
              onCompact: compact,
            });
            // garbage collection past the grace period: nothing orphaned, nothing missing
            // (twice: the first run's own journal and the previous generation become garbage too)
            for (let pass = 0; pass < 2; pass++) {
              clock += 2 * HOUR;
              await compactSafe(h.store, h.safe, {
                policy: { ...base, locked: [] },
                owner: 'test',
                now,
                graceMs: HOUR,
              });
            }
            await checkRestores(h.store, h.safe, expected, keys, nDevices);
            const reader = new SafeReader(h.store, h.safe, keys);
            const referenced = await referencedKeys(reader, await reader.generation());
            const present = new Set((await h.store.list(safePrefix(h.safe))).map((o) => o.key));
            for (const k of referenced) expect(present.has(k), `referenced ${k} is missing`).toBe(true);
            const extra = [safeConfigKey(h.safe), policyKey(h.safe)];
            const orphans = [...present].filter((k) => !referenced.has(k) && !extra.includes(k));
            expect(orphans).toEqual([]);
          } finally {
            rmSync(root, { recursive: true, force: true });
          }
        },
      ),
      { numRuns: 20 },
    );
  }, 180_000);
});
