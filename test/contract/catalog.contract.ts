/** The Catalog contract (core/ports/catalog.ts), run against every adapter. */
import { describe, expect, it } from 'vitest';
import type { Catalog, RpRecord } from '#core/ports/catalog.ts';

const T0 = '2026-01-01T00:00:00.000Z';
const at = (minutes: number): string => new Date(Date.parse(T0) + minutes * 60_000).toISOString();

function committed(
  safe: string,
  rp: number,
  parent: number | null,
  minutes: number,
): RpRecord & { state: 'committed' } {
  return {
    safe,
    rp,
    state: 'committed',
    parent,
    createdAt: at(minutes),
    updatedAt: at(minutes + 1),
    manifestKey: `safes/${safe}/rp/${String(rp).padStart(10, '0')}.json`,
    segmentCount: 1,
    storedBytes: 100,
    devices: [],
  };
}

/** Commits RPs 1, 2, 3 of `safe`, a chain made at minutes 0, 10 and 20. */
async function commitThree(c: Catalog, safe: string): Promise<void> {
  for (const [rp, m] of [
    [1, 0],
    [2, 10],
    [3, 20],
  ] as const)
    await c.commitRp(committed(safe, rp, rp === 1 ? null : rp - 1, m));
}

export function catalogContract(name: string, make: () => Promise<Catalog>): void {
  describe(`Catalog contract: ${name}`, () => {
    it('commits atomically and idempotently, advancing the safe’s newest RP only forward', async () => {
      const c = await make();
      const safe = `c1-${Math.random().toString(36).slice(2, 8)}`;
      expect(await c.commitRp(committed(safe, 1, null, 0))).toBe('committed');
      expect(await c.commitRp(committed(safe, 1, null, 0))).toBe('already-committed');
      expect(await c.commitRp(committed(safe, 3, 2, 20))).toBe('committed');
      expect(await c.commitRp(committed(safe, 2, 1, 10))).toBe('committed');
      const s = await c.getSafe(safe);
      expect(s).toMatchObject({
        safe,
        newestRp: 3,
        newestRpCreatedAt: at(20),
        committedRps: 3,
        storedBytes: 300,
      });
      expect((await c.listRps(safe)).map((r) => r.rp)).toEqual([1, 2, 3]);
      expect((await c.listRps(safe, { fromRp: 2, limit: 1 })).map((r) => r.rp)).toEqual([2]);
      expect((await c.listSafes()).map((x) => x.safe)).toContain(safe);
    });

    it('finds the newest committed RP at or before a time', async () => {
      const c = await make();
      const safe = `c2-${Math.random().toString(36).slice(2, 8)}`;
      await commitThree(c, safe);
      expect((await c.rpAtOrBefore(safe, at(15)))?.rp).toBe(2);
      expect((await c.rpAtOrBefore(safe, at(10)))?.rp).toBe(2);
      expect((await c.rpAtOrBefore(safe, at(99)))?.rp).toBe(3);
      expect(await c.rpAtOrBefore(safe, at(-1))).toBeUndefined();
    });

    it('keeps a waiting child findable until it commits, and never downgrades a committed RP', async () => {
      const c = await make();
      const safe = `c3-${Math.random().toString(36).slice(2, 8)}`;
      const child = {
        ...committed(safe, 2, 1, 5),
        state: 'waiting' as const,
        reason: 'waiting for parent RP 1',
      };
      await c.markWaiting(child);
      expect(await c.waitingChildren(safe, 1)).toEqual([
        { safe, rp: 2, parent: 1, manifestKey: child.manifestKey },
      ]);
      expect((await c.getRp(safe, 2))?.state).toBe('waiting');
      await c.commitRp(committed(safe, 1, null, 0));
      await c.commitRp(committed(safe, 2, 1, 5));
      expect(await c.waitingChildren(safe, 1)).toEqual([]);
      await c.quarantineUpload({
        key: child.manifestKey,
        reason: 'late duplicate judged bad',
        size: 1,
        createdAt: at(6),
        quarantinedAt: at(7),
        safe,
        rp: 2,
      });
      expect((await c.getRp(safe, 2))?.state).toBe('committed');
    });

    it('records quarantined uploads once, per safe, deleting nothing', async () => {
      const c = await make();
      const safe = `c4-${Math.random().toString(36).slice(2, 8)}`;
      const q = {
        key: `safes/${safe}/rp/0000000001.json`,
        reason: 'bad',
        size: 3,
        createdAt: at(0),
        quarantinedAt: at(1),
        safe,
        rp: 1,
      };
      await c.quarantineUpload(q);
      await c.quarantineUpload(q);
      expect(await c.listQuarantined(safe)).toEqual([q]);
      expect(await c.getSafe(safe)).toMatchObject({ quarantined: 1, committedRps: 0 });
      expect(await c.getRp(safe, 1)).toMatchObject({ state: 'quarantined', reason: 'bad' });
    });

    it('stores segments once and returns the ones asked for', async () => {
      const c = await make();
      const safe = `c5-${Math.random().toString(36).slice(2, 8)}`;
      const seg = (id: string, liveBytes: number) => ({
        safe,
        id: id.repeat(64),
        key: `safes/${safe}/seg/${id.repeat(2)}/${id.repeat(64)}.seg`,
        bytes: 10,
        frames: 2,
        firstRp: 1,
        liveBytes,
      });
      await c.putSegments([seg('a', 10), seg('b', 10)]);
      await c.putSegments([seg('a', 3)]);
      const got = await c.getSegments(safe, ['a'.repeat(64), 'c'.repeat(64)]);
      expect([...got.keys()]).toEqual(['a'.repeat(64)]);
      expect(got.get('a'.repeat(64))?.liveBytes).toBe(10);
    });

    it('sets a safe’s RPO target', async () => {
      const c = await make();
      const safe = `c6-${Math.random().toString(36).slice(2, 8)}`;
      await c.setRpoTarget(safe, 900, at(0));
      expect(await c.getSafe(safe)).toMatchObject({ safe, rpoTargetSeconds: 900, firstSeenAt: at(0) });
    });

    it('marks segments condemned, revived and deleted', async () => {
      const c = await make();
      const safe = `c7-${Math.random().toString(36).slice(2, 8)}`;
      const seg = (ch: string) => ({
        safe,
        id: ch.repeat(64),
        key: `safes/${safe}/seg/x`,
        bytes: 10,
        frames: 2,
        firstRp: 1,
        liveBytes: 10,
      });
      await c.putSegments([seg('a'), seg('b')]);
      const retention = { last: 1, hourly: 0, daily: 0, weekly: 0, monthly: 0, locked: [] };
      const base = { safe, upTo: 1, expired: [], written: [], retention, at: at(1) };
      await c.recordGeneration({
        ...base,
        generation: 1,
        condemned: [
          { id: 'a'.repeat(64), generation: 1 },
          { id: 'f'.repeat(64), generation: 1 },
        ],
        revived: [],
      });
      let got = await c.getSegments(safe, ['a'.repeat(64), 'b'.repeat(64), 'f'.repeat(64)]);
      expect(got.get('a'.repeat(64))?.condemnedIn).toBe(1);
      expect(got.get('b'.repeat(64))?.condemnedIn).toBeUndefined();
      expect(got.has('f'.repeat(64))).toBe(false); // a segment ingest never saw gets no item
      await c.recordGeneration({ ...base, generation: 2, condemned: [], revived: ['a'.repeat(64)] });
      expect((await c.getSegments(safe, ['a'.repeat(64)])).get('a'.repeat(64))?.condemnedIn).toBeUndefined();
      await c.markSegmentsDeleted(safe, ['b'.repeat(64)], at(5));
      await c.markSegmentsDeleted(safe, ['b'.repeat(64)], at(9));
      got = await c.getSegments(safe, ['b'.repeat(64)]);
      expect(got.get('b'.repeat(64))?.deletedAt).toBe(at(5));
    });

    it('records a generation once: expired RPs leave the committed set and the time index', async () => {
      const c = await make();
      const safe = `c8-${Math.random().toString(36).slice(2, 8)}`;
      await commitThree(c, safe);
      const retention = { last: 2, hourly: 0, daily: 1, weekly: 0, monthly: 0, locked: [1] };
      const g = {
        safe,
        generation: 1,
        upTo: 3,
        expired: [2],
        written: [],
        condemned: [],
        revived: [],
        retention,
        at: at(30),
      };
      await c.recordGeneration(g);
      await c.recordGeneration(g);
      expect(await c.getSafe(safe)).toMatchObject({
        committedRps: 2,
        generation: 1,
        compactedUpTo: 3,
        newestRp: 3,
      });
      expect((await c.getRp(safe, 2))?.state).toBe('expired');
      expect((await c.rpAtOrBefore(safe, at(15)))?.rp).toBe(1);
      await c.recordGeneration({ ...g, generation: 0 + 1, upTo: 1 });
      expect((await c.getSafe(safe))?.compactedUpTo).toBe(3);
    });

    it('expires one RP whatever it knew of it, and never brings an expired RP back', async () => {
      const c = await make();
      const safe = `c9-${Math.random().toString(36).slice(2, 8)}`;
      const key = (rp: number): string => `safes/${safe}/rp/${String(rp).padStart(10, '0')}.json`;
      const expiry = (rp: number, minutes: number) => ({
        safe,
        rp,
        parent: rp - 1,
        generation: 1,
        manifestKey: key(rp),
        createdAt: at(minutes),
        at: at(60),
      });
      await commitThree(c, safe);
      // committed: it leaves the committed set and the time index, once
      await c.expireRp(expiry(2, 10));
      await c.expireRp(expiry(2, 10));
      expect(await c.getSafe(safe)).toMatchObject({ committedRps: 2, newestRp: 3 });
      expect((await c.getRp(safe, 2))?.state).toBe('expired');
      expect((await c.rpAtOrBefore(safe, at(15)))?.rp).toBe(1);
      // waiting for its parent: recorded expired, and it waits no more
      await c.markWaiting({
        safe,
        rp: 5,
        state: 'waiting',
        parent: 4,
        createdAt: at(40),
        updatedAt: at(41),
        manifestKey: key(5),
      });
      await c.expireRp(expiry(5, 40));
      expect(await c.getRp(safe, 5)).toMatchObject({ state: 'expired', parent: 4 });
      expect(await c.waitingChildren(safe, 4)).toEqual([]);
      // never seen before (indexed after the compaction that merged it away)
      await c.expireRp(expiry(4, 30));
      expect(await c.getRp(safe, 4)).toMatchObject({ state: 'expired', parent: 3, manifestKey: key(4) });
      // and never committed, waiting or quarantined again
      expect(await c.commitRp(committed(safe, 4, 3, 30))).toBe('already-committed');
      expect(await c.commitRp(committed(safe, 2, 1, 10))).toBe('already-committed');
      await c.markWaiting({
        safe,
        rp: 4,
        state: 'waiting',
        parent: 3,
        createdAt: at(30),
        updatedAt: at(61),
        manifestKey: key(4),
      });
      await c.quarantineUpload({
        key: key(2),
        reason: 'a late replay',
        size: 1,
        createdAt: at(10),
        quarantinedAt: at(62),
        safe,
        rp: 2,
      });
      expect((await c.listRps(safe)).map((r) => [r.rp, r.state])).toEqual([
        [1, 'committed'],
        [2, 'expired'],
        [3, 'committed'],
        [4, 'expired'],
        [5, 'expired'],
      ]);
      expect(await c.getSafe(safe)).toMatchObject({ committedRps: 2, newestRp: 3 });
      // a quarantined RP stays quarantined
      await c.quarantineUpload({
        key: key(6),
        reason: 'bad',
        size: 1,
        createdAt: at(50),
        quarantinedAt: at(51),
        safe,
        rp: 6,
      });
      await c.expireRp(expiry(6, 50));
      expect((await c.getRp(safe, 6))?.state).toBe('quarantined');
      // a generation's record expires an RP that was waiting for its parent as well
      await c.markWaiting({
        safe,
        rp: 8,
        state: 'waiting',
        parent: 7,
        createdAt: at(70),
        updatedAt: at(71),
        manifestKey: key(8),
      });
      await c.recordGeneration({
        safe,
        generation: 2,
        upTo: 9,
        expired: [8],
        written: [],
        condemned: [],
        revived: [],
        retention: { last: 1, hourly: 0, daily: 0, weekly: 0, monthly: 0, locked: [] },
        at: at(80),
      });
      expect(await c.getRp(safe, 8)).toMatchObject({ state: 'expired', parent: 7 });
      expect(await c.waitingChildren(safe, 7)).toEqual([]);
      expect(await c.getSafe(safe)).toMatchObject({ committedRps: 2, newestRp: 3, generation: 2 });
    });
  });
}
