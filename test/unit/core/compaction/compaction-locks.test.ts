/**
 * Issue 15, point 8, proven impossible: compactors exclude each other through the safe's compact
 * lock; an attempt never deletes another's work (a compactor that lost its lock commits nothing,
 * and its objects are left for the next generation to list as orphans); a long compaction keeps
 * its lock fresh, so no other compactor starts meanwhile.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  beginCompaction,
  compactSafe,
  finishCompaction,
  rewriteOutput,
  selectRewrite,
  shardLiveness,
  shardMaps,
} from '#core/compaction/compact.ts';
import { generationWorkPrefix, safePrefix } from '#core/keys.ts';
import { acquireLock, LockBusyError, lockTiming } from '#core/locks.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import { SafeReader } from '#core/safe-reader.ts';
import { harness } from '../../../support/backup-harness.ts';
import { sha256 } from '../../../support/read-image.ts';

const BS = 4096;
const roots: string[] = [];
afterEach(() => {
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

async function history(backups: number) {
  const root = mkdtempSync(join(tmpdir(), 'cpl-'));
  roots.push(root);
  let clock = Date.parse('2026-11-01T00:00:00Z');
  const tick = (): Date => {
    clock += 3600_000;
    return new Date(clock);
  };
  const h = harness(root, 'cpl', undefined, undefined, tick);
  const img = randomBytes(48 * BS);
  const path = join(root, 'd.img');
  const expected: string[] = [];
  for (let i = 0; i < backups; i++) {
    if (i > 0) randomBytes(16 * BS).copy(img, (i % 3) * 16 * BS);
    writeFileSync(path, img);
    await h.backup({ devices: [{ path, id: 'd' }], blockSize: BS, segmentBytes: 64 * 1024 });
    expected.push(sha256(img));
  }
  return { h, expected, now: () => new Date(clock) };
}

/** A store whose every operation takes `ms` longer: a slow network. */
function slow(inner: ObjectStore, ms: number): ObjectStore {
  const wait = () => new Promise((r) => setTimeout(r, ms));
  return new Proxy(inner, {
    get(target, prop) {
      const v = (target as unknown as Record<string | symbol, unknown>)[prop];
      if (typeof v !== 'function' || prop === 'openWriter' || prop === 'filePath')
        return typeof v === 'function' ? v.bind(target) : v;
      return async (...args: unknown[]) => {
        await wait();
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

const policy = { last: 2, hourly: 0, daily: 0, weekly: 0, monthly: 0, locked: [] };

describe('compaction and the compact lock', () => {
  it('a compactor that lost its lock commits nothing, and nothing of its work is deleted under it', async () => {
    const { h, expected, now } = await history(5);
    const s = { policy, owner: 'a', now, graceMs: 0, segmentBytes: 32 * 1024, rewriteBelow: 0.9 };
    const lockA = await acquireLock(h.store, h.safe, { kind: 'compact', purpose: 'compact', owner: 'a' });
    const begun = await beginCompaction(h.store, h.safe, s, lockA);
    if (begun.kind !== 'started') throw new Error('expected work');
    const journal = begun.journal;
    for (let i = 0; i < journal.shards.length; i++) await shardLiveness(h.store, h.safe, journal, i);
    const plan = (await selectRewrite(h.store, h.safe, journal, s.segmentBytes))!;
    // A stalls; another process takes its lock for stale and removes it, then compacts
    await h.store.delete(lockA.key);
    const b = await compactSafe(h.store, h.safe, { ...s, owner: 'b' });
    expect(b.generation).toBe(1);
    const prefixA = generationWorkPrefix(h.safe, 1, journal.attempt!);
    expect((await h.store.list(prefixA)).length).toBeGreaterThan(0); // B never touched A's attempt
    // A wakes up and goes on: its outputs and maps are harmless, its commit never happens
    for (let o = 0; o < plan.outputs.length; o++)
      await rewriteOutput(h.store, h.safe, plan, o, journal.attempt!);
    for (let i = 0; i < journal.shards.length; i++) await shardMaps(h.store, h.safe, journal, plan, i);
    await lockA.refresh();
    // (its generation number is taken, and its lock is lost: either refuses the commit)
    await expect(finishCompaction(h.store, h.safe, journal, plan, lockA, { now })).rejects.toThrow(
      /lost the lock|already exists or changed concurrently/,
    );
    await lockA.release();
    const reader = new SafeReader(h.store, h.safe);
    expect((await reader.generation())?.garbage.some((g) => g.key.startsWith(prefixA))).toBe(true);
    for (const rp of await reader.listRps())
      expect(sha256(await reader.readImage(rp, 'd'))).toBe(expected[rp - 1]);
    // the next compactions list A's leftovers as orphans and collect them; what B's view needs stays
    for (let i = 0; i < 3; i++) await compactSafe(h.store, h.safe, { ...s, owner: 'c' });
    expect(await h.store.list(prefixA)).toEqual([]);
    const after = new SafeReader(h.store, h.safe);
    for (const rp of await after.listRps())
      expect(sha256(await after.readImage(rp, 'd'))).toBe(expected[rp - 1]);
    expect((await h.store.list(safePrefix(h.safe))).some((o) => o.key.includes('/locks/'))).toBe(false);
  });

  it('keeps its lock fresh through a compaction longer than the stale time: no other compactor starts', async () => {
    const { h, expected, now } = await history(6);
    const timing = lockTiming(1000); // stale after 1 s, refreshed every 0.17 s
    const store = slow(h.store, 40);
    let busy = 0;
    let running = true;
    const compaction = compactSafe(store, h.safe, {
      policy,
      owner: 'long',
      now,
      lockTiming: timing,
      rewriteBelow: 0.9,
    }).finally(() => {
      running = false;
    });
    const t0 = Date.now();
    while (running) {
      await new Promise((r) => setTimeout(r, 150));
      if (!running) break;
      const other = await acquireLock(h.store, h.safe, {
        kind: 'compact',
        purpose: 'compact',
        owner: 'other',
        timing,
      }).catch((e) => e);
      if (other instanceof LockBusyError) busy++;
      else if (running) throw new Error('a second compactor got the lock during the compaction');
      else await other.release();
    }
    const r = await compaction;
    expect(Date.now() - t0).toBeGreaterThan(2 * timing.staleMs); // it ran past the stale time …
    expect(busy).toBeGreaterThan(5); // … and every other compactor found it busy meanwhile
    expect(r.generation).toBe(1);
    const reader = new SafeReader(h.store, h.safe);
    for (const rp of await reader.listRps())
      expect(sha256(await reader.readImage(rp, 'd'))).toBe(expected[rp - 1]);
  }, 60_000);
});
