import { createHash } from 'node:crypto';
/**
 * The index use case on a real (directory) safe written by the backup code, with an in-memory
 * catalog: commits, idempotence, out-of-order parents, and every bad input ending in quarantine
 * with a named reason and nothing deleted.
 */
import {
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FsObjectStore } from '#adapters/fs-store.ts';
import { compactSafe } from '#core/compaction/compact.ts';
import { decodeBlockMap, encodeBlockMap } from '#core/format/block-map.ts';
import { generationKey, segmentKey } from '#core/keys.ts';
import { SafeReader } from '#core/safe-reader.ts';
import {
  handleArrival,
  type IndexOutcome,
  ParentPendingError,
} from '../../../../functions/ingest/index-manifest.ts';
import { MemoryCatalog } from '../../../support/fakes/memory-catalog.ts';
import {
  copySafe,
  DEVICE,
  keysOf,
  makeRpFixture,
  objectCreated,
  type RpFixture,
} from '../../../support/rp-fixture.ts';

const BUCKET = 'safes-bucket';
let fx: RpFixture;
const cleanup: string[] = [];

beforeAll(async () => {
  fx = await makeRpFixture('fx');
  cleanup.push(fx.root);
});
afterAll(() => {
  for (const d of cleanup) rmSync(d, { recursive: true, force: true });
});

function setup() {
  const { dir, store } = copySafe(fx);
  cleanup.push(dir);
  const catalog = new MemoryCatalog();
  const deps = { catalog, bucket: BUCKET, storeFor: () => store, now: () => new Date() };
  const arrive = (key: string): Promise<IndexOutcome> => handleArrival(deps, objectCreated(BUCKET, key, 1));
  const path = (key: string): string => join(dir, key.slice(`safes/${fx.safe}/`.length));
  return { dir, store, catalog, arrive, path };
}

function files(dir: string): Map<string, number> {
  const out = new Map<string, number>();
  const walk = (d: string): void => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else out.set(p, statSync(p).size);
    }
  };
  walk(dir);
  return out;
}

const k = keysOf(() => fx);
/** The key of the first segment RP 1 wrote. */
const seg1 = (): string =>
  JSON.parse(readFileSync(join(fx.root, 'safe', 'rp', '0000000001.json'), 'utf8')).segments[0].key;

function manifestOf(store: FsObjectStore, path: (k: string) => string, rp: number): Record<string, unknown> {
  void store;
  return JSON.parse(readFileSync(path(k.manifest(rp)), 'utf8')) as Record<string, unknown>;
}

describe('index function use case', () => {
  it('commits a full and an incremental, idempotently, with O(segments) catalog writes', async () => {
    const t = setup();
    const o1 = await t.arrive(k.manifest(1));
    expect(o1).toMatchObject({ outcome: 'committed', safe: 'fx', rp: 1 });
    const writesAfter1 = t.catalog.writes;
    const segs1 = (manifestOf(t.store, t.path, 1).segments as unknown[]).length;
    expect(writesAfter1).toBe(segs1 + 2);
    expect(await t.arrive(k.manifest(2))).toMatchObject({ outcome: 'committed', rp: 2 });
    expect(await t.arrive(k.manifest(2))).toEqual({ outcome: 'duplicate', safe: 'fx', rp: 2 });
    expect(await t.arrive(seg1())).toMatchObject({ outcome: 'ignored', kind: 'segment' });
    const safe = await t.catalog.getSafe('fx');
    expect(safe).toMatchObject({ newestRp: 2, committedRps: 2, quarantined: 0 });
    const rps = await t.catalog.listRps('fx');
    expect(rps.map((r) => [r.rp, r.state, r.parent])).toEqual([
      [1, 'committed', null],
      [2, 'committed', 1],
    ]);
    expect(rps[1]!.devices?.[0]).toMatchObject({ id: DEVICE, blockSize: 4096 });
    expect(await t.catalog.rpAtOrBefore('fx', rps[0]!.createdAt!)).toMatchObject({ rp: 1 });
    expect(await t.catalog.rpAtOrBefore('fx', '2000-01-01T00:00:00.000Z')).toBeUndefined();
  });

  it('makes a child that arrives before its parent wait, then commits it with the parent', async () => {
    const t = setup();
    await expect(t.arrive(k.manifest(2))).rejects.toBeInstanceOf(ParentPendingError);
    expect(await t.catalog.getRp('fx', 2)).toMatchObject({
      state: 'waiting',
      reason: 'waiting for parent RP 1',
    });
    const o = await t.arrive(k.manifest(1));
    expect(o).toMatchObject({ outcome: 'committed', rp: 1, children: [{ outcome: 'committed', rp: 2 }] });
    expect(await t.arrive(k.manifest(2))).toMatchObject({ outcome: 'duplicate', rp: 2 });
    expect(t.catalog.waiting.size).toBe(0);
    expect((await t.catalog.getSafe('fx'))?.newestRp).toBe(2);
  });

  type Damage = (t: ReturnType<typeof setup>) => void;
  const editManifest =
    // biome-ignore lint/suspicious/noExplicitAny: the test damages arbitrary manifest fields
      (rp: number, edit: (m: Record<string, any>) => void): Damage =>
      (t) => {
        const m = JSON.parse(readFileSync(t.path(k.manifest(rp)), 'utf8'));
        edit(m);
        writeFileSync(t.path(k.manifest(rp)), JSON.stringify(m));
      };
  const badInputs: [string, Damage, RegExp, number?][] = [
    ['a missing segment', (t) => unlinkSync(t.path(seg1())), /segment .* is missing/],
    [
      'a truncated segment',
      (t) => truncateSync(t.path(seg1()), statSync(t.path(seg1())).size - 7),
      /is \d+ bytes, the manifest says \d+ \(truncated\?\)/,
    ],
    [
      'a block map checksum mismatch',
      (t) => {
        const p = t.path(k.map(1));
        const b = readFileSync(p);
        b[b.length - 1]! ^= 0xff;
        writeFileSync(p, b);
      },
      /block map .*: checksum mismatch \(SHA-256\)/,
    ],
    [
      'a segment footer checksum mismatch',
      (t) => {
        const p = t.path(seg1());
        const b = readFileSync(p);
        b[b.length - 33]! ^= 0x01; // last byte of the compressed index
        writeFileSync(p, b);
      },
      /segment .*: segment index checksum mismatch/,
    ],
    [
      'an unknown format version',
      editManifest(1, (m) => (m.version = 99)),
      /format version 99 is not supported/,
    ],
    [
      'an oversized manifest',
      (t) => writeFileSync(t.path(k.manifest(1)), Buffer.alloc(17 * 1024 * 1024, 0x20)),
      /oversized manifest: 17825792 bytes/,
    ],
    [
      'a manifest claiming another safe',
      editManifest(1, (m) => (m.safe = 'other')),
      /manifest claims safe "other" but is stored in safe fx/,
    ],
    [
      'a block map key in another safe',
      editManifest(1, (m) => (m.devices[0].blockMap.key = 'safes/other/map/0000000001/d.map')),
      /block map key "safes\/other\/map\/0000000001\/d.map" is not a block map of RP 1 device d/,
    ],
    [
      'a segment key with path traversal',
      editManifest(1, (m) => (m.segments[0].key = `safes/fx/seg/../../other/seg/${m.segments[0].id}.seg`)),
      /segment key .*\.\.\/\.\.\/other.* is not safes\/fx\/seg\//,
    ],
    [
      'a manifest that is not JSON',
      (t) => writeFileSync(t.path(k.manifest(1)), '{"format":"cdp-manifest",'),
      /manifest is not JSON \(truncated\?\)/,
    ],
    [
      'a frame count that does not match the footer',
      editManifest(1, (m) => (m.segments[0].frames += 1)),
      /footer lists \d+ frames, the manifest says \d+/,
    ],
    [
      'an incremental claiming to be a full',
      editManifest(2, (m) => (m.parent = null)),
      /RP 2 claims to be a full \(no parent\), but only RP 1 of a safe is one/,
      2,
    ],
    [
      'a map that references a segment nobody uploaded',
      editManifest(2, (m) => (m.segments = [])),
      /references segment [0-9a-f]{64}, which is neither in this RP nor committed in the safe/,
      2,
    ],
  ];

  for (const [name, damage, reason, rp = 1] of badInputs) {
    it(`quarantines ${name}, naming it and deleting nothing`, async () => {
      const t = setup();
      if (rp === 2) expect(await t.arrive(k.manifest(1))).toMatchObject({ outcome: 'committed' });
      damage(t);
      const before = files(t.dir);
      const o = await t.arrive(k.manifest(rp));
      expect(o).toMatchObject({ outcome: 'quarantined', safe: 'fx', rp });
      expect((o as { reason: string }).reason).toMatch(reason);
      expect(files(t.dir)).toEqual(before);
      expect(await t.catalog.getRp('fx', rp)).toMatchObject({ state: 'quarantined' });
      expect((await t.catalog.listQuarantined('fx')).map((q) => q.key)).toEqual([k.manifest(rp)]);
      // A second delivery is harmless.
      expect(await t.arrive(k.manifest(rp))).toMatchObject({ outcome: 'quarantined' });
      expect(await t.catalog.listQuarantined('fx')).toHaveLength(1);
    });
  }

  it('quarantines hostile keys and events of another bucket without reading anything', async () => {
    const t = setup();
    for (const key of [
      'safes/fx/../other/rp/0000000001.json',
      'safes/FX/rp/0000000001.json',
      'safes/fx/rp/1.json',
    ]) {
      expect(await t.arrive(key)).toMatchObject({
        outcome: 'quarantined',
        reason: expect.stringMatching(/bad key/),
      });
    }
    const other = await handleArrival(
      { catalog: t.catalog, bucket: BUCKET, storeFor: () => t.store, now: () => new Date() },
      objectCreated('someone-else', k.manifest(1)),
    );
    expect(other).toMatchObject({
      outcome: 'quarantined',
      reason: expect.stringMatching(/bucket someone-else/),
    });
    expect(await t.catalog.getRp('fx', 1)).toBeUndefined();
  });

  it('quarantines the child of a quarantined parent', async () => {
    const t = setup();
    editManifest(1, (m) => (m.safe = 'other'))(t);
    expect(await t.arrive(k.manifest(1))).toMatchObject({ outcome: 'quarantined' });
    expect(await t.arrive(k.manifest(2))).toMatchObject({
      outcome: 'quarantined',
      reason: expect.stringMatching(/parent RP 1 is quarantined/),
    });
  });

  it('reads back what it committed', async () => {
    const t = setup();
    await t.arrive(k.manifest(1));
    await t.arrive(k.manifest(2));
    const reader = new SafeReader(t.store, 'fx');
    expect(await reader.readImage(2, DEVICE)).toEqual(fx.images[1]);
  });

  it('indexed after a compaction merged RP 1 away and collected its objects: RP 1 expired, RP 2 committed through the generation', async () => {
    const t = setup();
    const policy = { last: 1, hourly: 0, daily: 0, weekly: 0, monthly: 0, locked: [] };
    await compactSafe(t.store, 'fx', { policy, owner: 'test', graceMs: 0 });
    expect(
      (await compactSafe(t.store, 'fx', { policy, owner: 'test', graceMs: 0 })).garbageDeleted,
    ).toBeGreaterThan(0);
    expect(await t.store.head(fx.maps[2] ?? '')).toBeUndefined();
    expect(await t.arrive(k.manifest(1))).toMatchObject({ outcome: 'expired', rp: 1 });
    expect(await t.arrive(k.manifest(2))).toMatchObject({ outcome: 'committed', rp: 2 });
    expect(await t.arrive(k.manifest(1))).toMatchObject({ outcome: 'expired', rp: 1 });
    expect((await t.catalog.getSafe('fx'))?.newestRp).toBe(2);
    expect(await new SafeReader(t.store, 'fx').readImage(2, DEVICE)).toEqual(fx.images[1]);
  });

  it('quarantines a retained RP whose generation reads a damaged segment of the parent it merged away (never validated itself)', async () => {
    const t = setup();
    const policy = { last: 1, hourly: 0, daily: 0, weekly: 0, monthly: 0, locked: [] };
    await compactSafe(t.store, 'fx', { policy, owner: 'test' });
    // the segment of RP 1 that RP 2 reads: its footer index now names another segment
    const m2 = JSON.parse(readFileSync(join(fx.root, 'safe', 'rp', '0000000002.json'), 'utf8'));
    const own = new Set(m2.segments.map((x: { id: string }) => x.id));
    const resolved = await new SafeReader(t.store, 'fx').resolve(2, DEVICE);
    const theirs = resolved.extents.find((e) => e.kind === 'data' && !own.has(e.segment));
    if (theirs?.kind !== 'data') throw new Error("the fixture's RP 2 reads no segment of RP 1");
    const path = t.path(segmentKey('fx', theirs.segment));
    const bytes = readFileSync(path);
    bytes[bytes.length - 40]! ^= 0xff;
    writeFileSync(path, bytes);
    expect(await t.arrive(k.manifest(1))).toMatchObject({ outcome: 'expired', rp: 1 });
    expect(await t.arrive(k.manifest(2))).toMatchObject({
      outcome: 'quarantined',
      rp: 2,
      reason: expect.stringContaining(theirs.segment),
    });
  });

  describe('references to segments garbage collection retired (issue 15)', () => {
    /** The segment of RP 1 that RP 2's map reuses (its deduplicated block). */
    const segId = (): string => {
      const m2 = JSON.parse(readFileSync(join(fx.root, 'safe', 'rp', '0000000002.json'), 'utf8'));
      const own = new Set(m2.segments.map((x: { id: string }) => x.id));
      const map = decodeBlockMap(
        readFileSync(join(fx.root, 'safe', m2.devices[0].blockMap.key.slice('safes/fx/'.length))),
      );
      const reused = map.extents.find((e) => e.kind === 'data' && !own.has(e.segment));
      if (reused?.kind !== 'data') throw new Error("the fixture's RP 2 reuses no segment of RP 1");
      return reused.segment;
    };
    const segPath = (t: ReturnType<typeof setup>): string => t.path(segmentKey('fx', segId()));
    const condemn = (t: ReturnType<typeof setup>, generation: number) =>
      t.catalog.recordGeneration({
        safe: 'fx',
        generation,
        upTo: 1,
        expired: [],
        written: [],
        condemned: [{ id: segId(), generation }],
        revived: [],
        retention: { last: 1, hourly: 0, daily: 0, weekly: 0, monthly: 0, locked: [] },
        at: new Date().toISOString(),
      });

    it('quarantines an RP that uses a segment its own view already lists as garbage', async () => {
      const t = setup();
      await t.arrive(k.manifest(1));
      // generation 1 (committed while RP 2's manifest is not there yet) lists the segment as garbage
      const m2 = readFileSync(t.path(k.manifest(2)));
      unlinkSync(t.path(k.manifest(2)));
      const policy = { last: 10, hourly: 0, daily: 0, weekly: 0, monthly: 0, locked: [] };
      await compactSafe(t.store, 'fx', { policy, owner: 'test' });
      const genPath = t.path(generationKey('fx', 1));
      const gen = JSON.parse(readFileSync(genPath, 'utf8'));
      gen.garbage.push({ key: segmentKey('fx', segId()), since: gen.createdAt, generation: 1 });
      writeFileSync(genPath, JSON.stringify(gen));
      writeFileSync(t.path(k.manifest(2)), m2);
      editManifest(2, (m) => (m.view = 1))(t);
      expect(await t.arrive(k.manifest(2))).toMatchObject({
        outcome: 'quarantined',
        reason: expect.stringMatching(
          /which generation 1 condemned; the RP was written against generation 1/,
        ),
      });
    });

    it('commits an RP using a segment the catalog still marks condemned but the newest generation took up again', async () => {
      const t = setup();
      await t.arrive(k.manifest(1));
      await condemn(t, 1);
      editManifest(2, (m) => (m.view = 1))(t);
      expect(await t.arrive(k.manifest(2))).toMatchObject({ outcome: 'committed', rp: 2 });
    });

    it('commits an RP whose view predates the condemnation (its lock kept the segment)', async () => {
      const t = setup();
      await t.arrive(k.manifest(1));
      await condemn(t, 1);
      editManifest(2, (m) => (m.view = 0))(t);
      expect(await t.arrive(k.manifest(2))).toMatchObject({ outcome: 'committed', rp: 2 });
    });

    it('quarantines an RP that uses a segment garbage collection deleted, or that is gone from the bucket', async () => {
      const t = setup();
      await t.arrive(k.manifest(1));
      await t.catalog.markSegmentsDeleted('fx', [segId()], new Date().toISOString());
      expect(await t.arrive(k.manifest(2))).toMatchObject({
        outcome: 'quarantined',
        reason: expect.stringMatching(/which garbage collection deleted/),
      });
      const u = setup();
      await u.arrive(k.manifest(1));
      unlinkSync(segPath(u));
      expect(await u.arrive(k.manifest(2))).toMatchObject({
        outcome: 'quarantined',
        reason: expect.stringMatching(/missing from the bucket/),
      });
    });

    it('commits an RP whose every device is full without waiting for (or sharing the fate of) its parent', async () => {
      const t = setup();
      editManifest(1, (m) => (m.safe = 'other'))(t);
      expect(await t.arrive(k.manifest(1))).toMatchObject({ outcome: 'quarantined' });
      // RP 2 marked full: its map still reuses a segment of RP 1, which the catalog never recorded
      const m = JSON.parse(readFileSync(t.path(k.manifest(2)), 'utf8'));
      for (const d of m.devices) d.full = true;
      writeFileSync(t.path(k.manifest(2)), JSON.stringify(m));
      expect(await t.arrive(k.manifest(2))).toMatchObject({
        outcome: 'quarantined',
        reason: expect.stringMatching(/neither in this RP nor committed in the safe/),
      });
      // as a backup writes it when it cannot build on RP 1: every device full, nothing of RP 1 used
      const u = setup();
      editManifest(1, (x) => (x.safe = 'other'))(u);
      await u.arrive(k.manifest(1));
      const m2 = JSON.parse(readFileSync(u.path(k.manifest(2)), 'utf8'));
      for (const d of m2.devices) d.full = true;
      const mapPath = u.path(m2.devices[0].blockMap.key);
      const map = decodeBlockMap(readFileSync(mapPath));
      const own = map.extents.filter((e) => e.kind !== 'data' || e.segment !== segId());
      const body = encodeBlockMap({ ...map, extents: own });
      writeFileSync(mapPath, body);
      m2.devices[0].blockMap = {
        ...m2.devices[0].blockMap,
        bytes: body.length,
        sha256: createHash('sha256').update(body).digest('hex'),
        extents: own.length,
      };
      writeFileSync(u.path(k.manifest(2)), JSON.stringify(m2));
      expect(await u.arrive(k.manifest(2))).toMatchObject({ outcome: 'committed', rp: 2 });
    });
  });
});
