/** Compaction on hand-made histories: merge, synthetic fulls, segment rewrite, grace, leases. */
import { randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { referencedKeys } from '#core/compaction/collect-garbage.ts';
import {
  beginCompaction,
  compactSafe,
  finishCompaction,
  rewriteOutput,
  selectRewrite,
  shardLiveness,
  shardMaps,
} from '#core/compaction/compact.ts';
import { safePrefix } from '#core/keys.ts';
import { acquireLock, LockBusyError } from '#core/locks.ts';
import { SafeReader } from '#core/safe-reader.ts';
import { harness } from '../../../support/backup-harness.ts';
import { FaultyStore, InjectedCrash } from '../../../support/fakes/faulty-store.ts';
import { sha256 } from '../../../support/read-image.ts';

const BS = 4096;
const roots: string[] = [];
afterEach(() => {
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

async function history(backups: number, rewrite: (img: Buffer, i: number) => void) {
  const root = mkdtempSync(join(tmpdir(), 'cpt-'));
  roots.push(root);
  let clock = Date.parse('2026-11-01T00:00:00Z');
  const tick = (): Date => {
    clock += 3600_000;
    return new Date(clock);
  };
  const h = harness(root, 'cpt', undefined, undefined, tick);
  const img = randomBytes(64 * BS);
  const path = join(root, 'd.img');
  const expected: string[] = [];
  for (let i = 0; i < backups; i++) {
    if (i > 0) rewrite(img, i);
    writeFileSync(path, img);
    await h.backup({ devices: [{ path, id: 'd' }], blockSize: BS, segmentBytes: 1 << 20 });
    expected.push(sha256(img));
  }
  return { h, expected, now: () => new Date(clock) };
}

describe('compactSafe', () => {
  it('merges expired RPs, rewrites a sparse segment and keeps every retained RP exact', async () => {
    const { h, expected, now } = await history(6, (img, i) =>
      randomBytes(24 * BS).copy(img, (i % 2) * 24 * BS),
    );
    const before = (await h.store.list(safePrefix(h.safe))).reduce((n, o) => n + o.size, 0);
    const r = await compactSafe(h.store, h.safe, {
      policy: { last: 2, hourly: 0, daily: 0, weekly: 0, monthly: 0, locked: [] },
      owner: 't',
      now,
      graceMs: 0,
      maxDeltas: 1,
    });
    expect(r.kept).toEqual([5, 6]);
    expect(r.expired).toEqual([1, 2, 3, 4]);
    expect(r.segmentsRewritten).toBeGreaterThan(0);
    const reader = new SafeReader(h.store, h.safe);
    expect(await reader.listRps()).toEqual([5, 6]);
    for (const rp of [5, 6]) expect(sha256(await reader.readImage(rp, 'd'))).toBe(expected[rp - 1]);
    expect((await reader.chain(5, 'd')).map((l) => l.full)).toEqual([true]);
    await expect(reader.readImage(3, 'd')).rejects.toThrow(/expired by retention/);
    // garbage goes only after the grace period, on the next run
    await compactSafe(h.store, h.safe, {
      policy: { last: 2, hourly: 0, daily: 0, weekly: 0, monthly: 0, locked: [] },
      owner: 't',
      now,
      graceMs: 0,
    });
    const after = (await h.store.list(safePrefix(h.safe))).reduce((n, o) => n + o.size, 0);
    expect(after).toBeLessThan(before * 0.6);
    const fresh = new SafeReader(h.store, h.safe);
    for (const rp of [5, 6]) expect(sha256(await fresh.readImage(rp, 'd'))).toBe(expected[rp - 1]);
  });

  it('bounds every chain by maxDeltas with synthetic fulls', async () => {
    const { h, expected, now } = await history(10, (img, i) => randomBytes(BS).copy(img, i * BS));
    await compactSafe(h.store, h.safe, {
      policy: { last: 10, hourly: 0, daily: 0, weekly: 0, monthly: 0, locked: [] },
      owner: 't',
      now,
      maxDeltas: 2,
    });
    const reader = new SafeReader(h.store, h.safe);
    for (let rp = 1; rp <= 10; rp++) {
      expect((await reader.chain(rp, 'd')).length).toBeLessThanOrEqual(3);
      expect(sha256(await reader.readImage(rp, 'd'))).toBe(expected[rp - 1]);
    }
  });

  it('keeps locked RPs, and a second compactor waits for the compact lock', async () => {
    const { h, expected, now } = await history(4, (img, i) => randomBytes(BS).copy(img, i * BS));
    const other = await acquireLock(h.store, h.safe, { kind: 'compact', purpose: 'compact', owner: 'other' });
    const policy = { last: 1, hourly: 0, daily: 0, weekly: 0, monthly: 0, locked: [2] };
    await expect(compactSafe(h.store, h.safe, { policy, owner: 't', now })).rejects.toBeInstanceOf(
      LockBusyError,
    );
    await other.release();
    const r = await compactSafe(h.store, h.safe, { policy, owner: 't', now });
    expect(r.kept).toEqual([2, 4]);
    const reader = new SafeReader(h.store, h.safe);
    expect(sha256(await reader.readImage(2, 'd'))).toBe(expected[1]);
  });
});

describe('compactSafe committing a lost generation again', () => {
  it('commits a complete attempt only while every map it wrote is intact; otherwise compacts afresh', async () => {
    const { h, expected, now } = await history(4, (img, i) => randomBytes(8 * BS).copy(img, i * 8 * BS));
    const settings = {
      policy: { last: 3, hourly: 0, daily: 0, weekly: 0, monthly: 0, locked: [] },
      owner: 't',
      now,
      maxDeltas: 1,
    };
    const first = await compactSafe(h.store, h.safe, settings);
    expect(first.generation).toBe(1);
    expect(first.mapsWritten).toBeGreaterThan(0);
    const all = await h.store.list(safePrefix(h.safe));
    const genMaps = all.filter((o) => /\/gen\/0000000001\/[0-9a-f]{16}\/.*\.map$/.test(o.key));
    expect(genMaps.length).toBeGreaterThan(0);
    // the generation's commit is lost, and one of the maps its attempt wrote is damaged since
    await h.store.delete(all.find((o) => o.key.endsWith('/gen/0000000001.json'))!.key);
    const map = await h.store.get(genMaps[0]!.key);
    map[map.length - 1]! ^= 0xff;
    await h.store.put(genMaps[0]!.key, map);
    const again = await compactSafe(h.store, h.safe, settings);
    expect(again.notes.join('\n')).not.toMatch(/committing it from its work objects/);
    expect(again.generation).toBe(1);
    const reader = new SafeReader(h.store, h.safe);
    for (const rp of [2, 3, 4]) expect(sha256(await reader.readImage(rp, 'd'))).toBe(expected[rp - 1]);
  });
});

describe('compactSafe over lost manifests', () => {
  const policyAll = { last: 100, hourly: 0, daily: 0, weekly: 0, monthly: 0, locked: [] };

  it('keeps an RP the generation retains whose manifest was lost since, and every RP after it exact', async () => {
    const { h, expected, now } = await history(5, (img, i) => randomBytes(8 * BS).copy(img, i * 8 * BS));
    const settings = { policy: { ...policyAll, last: 3 }, owner: 't', now, maxDeltas: 7 };
    expect((await compactSafe(h.store, h.safe, settings)).kept).toEqual([3, 4, 5]);
    const root = mkdtempSync(join(tmpdir(), 'cpt-more-'));
    roots.push(root);
    const img = Buffer.from(await new SafeReader(h.store, h.safe).readImage(5, 'd'));
    randomBytes(8 * BS).copy(img, 40 * BS);
    writeFileSync(join(root, 'd.img'), img);
    await h.backup({
      devices: [{ path: join(root, 'd.img'), id: 'd' }],
      blockSize: BS,
      segmentBytes: 1 << 20,
    });
    // RP 4's manifest is lost; the generation still describes it
    const m4 = (await h.store.list(safePrefix(h.safe))).find((o) => o.key.endsWith('/rp/0000000004.json'))!;
    await h.store.delete(m4.key);
    await compactSafe(h.store, h.safe, { ...settings, policy: policyAll });
    const reader = new SafeReader(h.store, h.safe);
    for (const rp of [3, 4, 5]) expect(sha256(await reader.readImage(rp, 'd'))).toBe(expected[rp - 1]);
    expect(sha256(await reader.readImage(6, 'd'))).toBe(sha256(img));
  });

  it('refuses, naming it, to rebuild a delta whose parent the safe lacks', async () => {
    const { h, now } = await history(4, (img, i) => randomBytes(8 * BS).copy(img, i * 8 * BS));
    const m3 = (await h.store.list(safePrefix(h.safe))).find((o) => o.key.endsWith('/rp/0000000003.json'))!;
    await h.store.delete(m3.key);
    const before = (await h.store.list(safePrefix(h.safe))).map((o) => o.key);
    await expect(
      compactSafe(h.store, h.safe, { policy: { ...policyAll, last: 1 }, owner: 't', now }),
    ).rejects.toThrow(/RP 4 is a delta over RP 3, which the safe does not have/);
    const after = new Set((await h.store.list(safePrefix(h.safe))).map((o) => o.key));
    for (const k of before) expect(after.has(k), `${k} was deleted`).toBe(true);
  });
});

describe('compactSafe under crashes and concurrency', () => {
  const policy = { last: 2, hourly: 0, daily: 0, weekly: 0, monthly: 0, locked: [3] };

  it('killed at every write step, loses nothing, and a rerun finishes the job', async () => {
    const { h, expected, now } = await history(7, (img, i) =>
      randomBytes(24 * BS).copy(img, (i % 2) * 24 * BS),
    );
    const pristine = join(roots[0]!, 'pristine');
    cpSync(join(roots[0]!, 'safe'), pristine, { recursive: true });
    const retained = [3, 6, 7];
    let steps = 0;
    for (let k = 0; ; k++) {
      rmSync(join(roots[0]!, 'safe'), { recursive: true, force: true });
      cpSync(pristine, join(roots[0]!, 'safe'), { recursive: true });
      const faulty = new FaultyStore(h.store, k);
      let crashed = false;
      try {
        await compactSafe(faulty, h.safe, {
          policy,
          owner: 't',
          now,
          graceMs: 0,
          maxDeltas: 1,
          shardBlocks: 24,
        });
      } catch (e) {
        if (!(e instanceof InjectedCrash)) throw e;
        crashed = true;
      }
      // whatever view a crash left, everything it lists restores
      const mid = new SafeReader(h.store, h.safe);
      for (const rp of await mid.listRps())
        expect(sha256(await mid.readImage(rp, 'd')), `k=${k} RP ${rp}`).toBe(expected[rp - 1]);
      // reruns converge: the last one finds nothing to do and has collected every garbage
      let runs = 0;
      for (; runs < 4; runs++) {
        const r = await compactSafe(h.store, h.safe, { policy, owner: 't', now, graceMs: 0, maxDeltas: 1 });
        if (r.generation === null) break;
      }
      expect(runs, `k=${k}: compaction did not converge`).toBeLessThan(4);
      const after = new SafeReader(h.store, h.safe);
      expect(await after.listRps(), `k=${k}`).toEqual(retained);
      for (const rp of retained)
        expect(sha256(await after.readImage(rp, 'd')), `k=${k} RP ${rp}`).toBe(expected[rp - 1]);
      const referenced = await referencedKeys(after, await after.generation());
      const present = (await h.store.list(safePrefix(h.safe))).map((o) => o.key);
      expect(
        present.filter((x) => !referenced.has(x) && !/safe\.json$/.test(x)),
        `k=${k}`,
      ).toEqual([]);
      if (!crashed) {
        steps = k;
        break;
      }
    }
    expect(steps).toBeGreaterThan(5); // lease, journal, segments, maps, commit, release each crashed
  });

  it('a backup during a fanned-out compaction and a restore that started before it both stay right', async () => {
    const { h, expected, now } = await history(5, (img, i) =>
      randomBytes(24 * BS).copy(img, (i % 2) * 24 * BS),
    );
    const early = new SafeReader(h.store, h.safe);
    await early.listRps(); // this reader keeps the view it started with
    const lock = await acquireLock(h.store, h.safe, { kind: 'compact', purpose: 'compact', owner: 't' });
    const begun = await beginCompaction(
      h.store,
      h.safe,
      { policy, owner: 't', now, graceMs: 3600_000, shardBlocks: 16 },
      lock,
    );
    expect(begun.kind).toBe('started');
    if (begun.kind !== 'started') return;
    const { journal } = begun;
    expect(journal.shards).toHaveLength(4); // 64 blocks in shards of 16
    for (let i = 0; i < journal.shards.length; i++) await shardLiveness(h.store, h.safe, journal, i);
    // a backup lands between begin and finish: it is above upTo and stays out of the plan
    const img = randomBytes(64 * BS);
    const path = join(roots[0]!, 'd.img');
    writeFileSync(path, img);
    await h.backup({ devices: [{ path, id: 'd' }], blockSize: BS, segmentBytes: 1 << 20 });
    const plan = await selectRewrite(h.store, h.safe, journal);
    if (!plan) throw new Error('expected work');
    for (let o = 0; o < plan.outputs.length; o++)
      await rewriteOutput(h.store, h.safe, plan, o, journal.attempt!);
    for (let i = 0; i < journal.shards.length; i++) await shardMaps(h.store, h.safe, journal, plan, i);
    await finishCompaction(h.store, h.safe, journal, plan, lock, { now });
    await lock.release();
    const gen = await new SafeReader(h.store, h.safe).generation();
    expect(gen?.rps[0]).toMatchObject({ rp: 3, parent: null }); // RP 3 became a synthetic full …
    expect(gen?.rps[0]?.devices[0]?.parts).toHaveLength(4); // … written as four block-range parts
    const reader = new SafeReader(h.store, h.safe);
    expect(await reader.listRps()).toEqual([3, 4, 5, 6]);
    expect(sha256(await reader.readImage(6, 'd'))).toBe(sha256(img));
    for (const rp of [3, 4, 5]) expect(sha256(await reader.readImage(rp, 'd'))).toBe(expected[rp - 1]);
    // the restore that started on the old view still reads an RP that has since expired
    expect(sha256(await early.readImage(1, 'd'))).toBe(expected[0]);
  });
});
