/**
 * Races an adversarial review of the lock protocol found (each lost a committed RP or let a
 * writer in beside another before its fix). Every test replays the interleaving with store hooks
 * and asserts the RP still restores byte for byte.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FsObjectStore } from '#adapters/fs-store.ts';
import { compactSafe } from '#core/compaction/compact.ts';
import { encodeJson } from '#core/format/manifest.ts';
import { damageKey, parseKey } from '#core/keys.ts';
import { acquireLock, LockBusyError } from '#core/locks.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import { SafeReader } from '#core/safe-reader.ts';
import { parseDeviceArg } from '../../../agent/backup/device.ts';
import { replicateSafe } from '../../../agent/replicate/replicate-safe.ts';
import { type CompactionTask, handleCompactionTask } from '../../../functions/compact/compaction-tasks.ts';
import { harness } from '../../support/backup-harness.ts';
import { MemoryCatalog } from '../../support/fakes/memory-catalog.ts';

const BS = 4096;
const keepAll = { last: 100, hourly: 0, daily: 0, weekly: 0, monthly: 0, locked: [] };
const keep = (last: number, locked: number[] = []) => ({
  last,
  hourly: 0,
  daily: 0,
  weekly: 0,
  monthly: 0,
  locked,
});

/** Wraps a store so that `before(key)` runs before every putIfAbsent (a kill or a racing process). */
function hooked(inner: ObjectStore, before: (key: string) => Promise<void>): ObjectStore {
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'putIfAbsent')
        return async (key: string, body: Uint8Array) => {
          await before(key);
          return target.putIfAbsent(key, body);
        };
      const value = Reflect.get(target, prop);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

const killBefore = (rp: number) => async (key: string) => {
  const k = parseKey(key);
  if (k.kind === 'manifest' && k.rp === rp) throw new Error('SIGKILL');
};

let root: string;
let clock: number;
const hourly = () => {
  clock += 3600_000;
  return new Date(clock);
};
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'races-'));
  clock = Date.parse('2026-11-01T00:00:00Z');
});
afterEach(() => {
  vi.useRealTimers();
  rmSync(root, { recursive: true, force: true });
});

describe('garbage and locks', () => {
  it('an orphan an RP referenced again is condemned anew, so a read lock on the older view keeps it', async () => {
    const base = harness(root, 'cc', undefined, undefined, hourly);
    const dev = join(root, 'd.img');
    const opts = { devices: [{ path: dev, id: 'd' }], blockSize: BS };
    writeFileSync(dev, randomBytes(8 * BS));
    await base.backup(opts);
    const x = randomBytes(8 * BS);
    writeFileSync(dev, x);
    const killed = harness(root, 'cc', hooked(base.store, killBefore(2)), undefined, hourly);
    await expect(killed.backup(opts)).rejects.toThrow('SIGKILL');
    // RP 2 deduplicates half its blocks against the orphan; generation 1 condemns it meanwhile
    writeFileSync(dev, Buffer.concat([x.subarray(0, 4 * BS), randomBytes(4 * BS)]));
    const image2 = readFileSync(dev);
    let once = false;
    const racing = hooked(base.store, async (key) => {
      if (once || parseKey(key).kind !== 'block-map') return;
      once = true;
      await compactSafe(base.store, 'cc', { policy: keepAll, owner: 'c', graceMs: 0 });
    });
    await harness(root, 'cc', racing, undefined, hourly).backup(opts);
    const lock = await acquireLock(base.store, 'cc', { kind: 'read', purpose: 'restore', owner: 'r' });
    expect(lock.record.view).toBe(1);
    const reader = new SafeReader(base.store, 'cc');
    const resolved = await reader.resolve(2, 'd');
    writeFileSync(dev, randomBytes(8 * BS));
    await base.backup(opts);
    await compactSafe(base.store, 'cc', { policy: keep(2), owner: 'c', graceMs: 0, rewriteBelow: 0.9 });
    const g2 = await new SafeReader(base.store, 'cc').generation();
    const read = new Set(resolved.extents.flatMap((e) => (e.kind === 'data' ? [e.segment] : [])));
    const condemned = g2?.garbage.filter((g) => [...read].some((segment) => g.key.includes(segment))) ?? [];
    expect(condemned.length).toBeGreaterThan(0);
    expect(condemned.map((g) => g.generation)).toEqual(condemned.map(() => 2));
    await compactSafe(base.store, 'cc', { policy: keep(2), owner: 'c', graceMs: 0 });
    const blocks: Buffer[] = [];
    await reader.readBlocks(resolved, (_i, b) => void blocks.push(Buffer.from(b)));
    expect(await reader.readImage(2, 'd')).toEqual(image2);
    await lock.release();
  });

  it('a compactor whose clock runs 40 minutes ahead does not take a live backup for stale', async () => {
    const base = harness(root);
    const dev = join(root, 'd.img');
    const opts = { devices: [{ path: dev, id: 'd' }], blockSize: BS };
    writeFileSync(dev, randomBytes(8 * BS));
    await base.backup(opts);
    writeFileSync(dev, randomBytes(8 * BS));
    const image2 = readFileSync(dev);
    await expect(harness(root, 'test-safe', hooked(base.store, killBefore(2))).backup(opts)).rejects.toThrow(
      'SIGKILL',
    );
    let deleted = -1;
    let once = false;
    const racing = hooked(base.store, async (key) => {
      if (once || parseKey(key).kind !== 'block-map') return;
      once = true;
      await compactSafe(base.store, 'test-safe', { policy: keepAll, owner: 'c', graceMs: 0 });
      vi.useFakeTimers({ toFake: ['Date'] });
      vi.setSystemTime(Date.now() + 40 * 60_000);
      try {
        deleted = (await compactSafe(base.store, 'test-safe', { policy: keepAll, owner: 'c', graceMs: 0 }))
          .garbageDeleted;
      } finally {
        vi.useRealTimers();
      }
    });
    const r = await harness(root, 'test-safe', racing).backup(opts);
    expect(r.manifest.devices[0]?.dedupBlocks).toBe(8);
    expect(deleted).toBe(0);
    expect(await new SafeReader(base.store, 'test-safe').readImage(2, 'd')).toEqual(image2);
  });

  it('a directory store stamps locks with its own clock: a holder whose clock is slow still excludes others', async () => {
    const store = new FsObjectStore(join(root, 'safe'), 'x');
    const holder = await acquireLock(store, 'x', { kind: 'write', purpose: 'backup', owner: 'host-A' });
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() - 40 * 60_000);
    await holder.refresh();
    vi.useRealTimers();
    const modified = (await store.head(holder.key))?.modified?.getTime() ?? 0;
    expect(Math.abs(modified - Date.now())).toBeLessThan(60_000);
    await expect(
      acquireLock(store, 'x', { kind: 'write', purpose: 'backup', owner: 'host-B' }),
    ).rejects.toBeInstanceOf(LockBusyError);
    await holder.release();
  });

  it('block maps of a device whose id contains ".tmp-" are not taken for temporary files', async () => {
    const h = harness(root, 'tm');
    const path = join(root, 'build.tmp-1.img');
    writeFileSync(path, randomBytes(8 * BS));
    const spec = parseDeviceArg(path);
    expect(spec.id).toContain('.tmp-');
    await h.backup({ devices: [spec], blockSize: BS });
    const mapDir = join(root, 'safe', 'map', '0000000001');
    const run = readdirSync(mapDir)[0] ?? '';
    const dayOld = new Date(Date.now() - 25 * 3600_000);
    utimesSync(join(mapDir, run, `${spec.id}.map`), dayOld, dayOld);
    await h.backup({ devices: [spec], blockSize: BS });
    expect(readdirSync(join(mapDir, run))).toEqual([`${spec.id}.map`]);
    for (const rp of [1, 2])
      expect(await new SafeReader(h.store, 'tm').readImage(rp, spec.id)).toEqual(readFileSync(path));
  });
});

describe('replication', () => {
  it('a map a killed replicate left, condemned as an orphan, is written anew rather than reused', async () => {
    const h = harness(root);
    const dev = join(root, 'd.img');
    const opts = { devices: [{ path: dev, id: 'd' }], blockSize: BS };
    writeFileSync(dev, randomBytes(8 * BS));
    await h.backup(opts);
    const dst = new FsObjectStore(join(root, 'dst'), h.safe);
    expect((await replicateSafe(h.store, dst, h.safe)).copiedRps).toEqual([1]);
    await h.backup(opts);
    await expect(replicateSafe(h.store, hooked(dst, killBefore(2)), h.safe)).rejects.toThrow('SIGKILL');
    expect(
      (await compactSafe(dst, h.safe, { policy: keepAll, owner: 'dst', graceMs: 0 })).orphansCondemned,
    ).toBeGreaterThan(0);
    let ran = false;
    const racing = hooked(dst, async (key) => {
      const k = parseKey(key);
      if (k.kind !== 'manifest' || k.rp !== 2 || ran) return;
      ran = true;
      await compactSafe(dst, h.safe, { policy: keepAll, owner: 'dst', graceMs: 0 });
    });
    expect((await replicateSafe(h.store, racing, h.safe)).copiedRps).toEqual([2]);
    expect(ran).toBe(true);
    expect(await new SafeReader(dst, h.safe).readImage(2, 'd')).toEqual(readFileSync(dev));
  });

  it('an RP whose parent the source merged away after an earlier replicate arrives whole', async () => {
    const h = harness(root);
    const dev = join(root, 'd.img');
    const img = Buffer.concat([randomBytes(6 * BS), Buffer.alloc(4 * BS), randomBytes(3 * BS)]);
    const backup = async (i: number) => {
      img.fill(i, (i % 6) * BS, (i % 6) * BS + BS);
      writeFileSync(dev, img);
      await h.backup({ devices: [{ path: dev, id: 'd' }], blockSize: BS });
    };
    for (let i = 1; i <= 3; i++) await backup(i);
    const dst = new FsObjectStore(join(root, 'dst'), h.safe);
    expect((await replicateSafe(h.store, dst, h.safe)).copiedRps).toEqual([1, 2, 3]);
    await backup(4);
    await compactSafe(h.store, h.safe, { policy: keep(1, [2]), owner: 't', graceMs: 0 });
    expect(
      (await compactSafe(h.store, h.safe, { policy: keep(1, [2]), owner: 't', graceMs: 0 })).garbageDeleted,
    ).toBeGreaterThan(0);
    expect((await replicateSafe(h.store, dst, h.safe)).copiedRps).toEqual([4]);
    expect(await new SafeReader(dst, h.safe).readImage(4, 'd')).toEqual(img);
  });
});

describe('damage', () => {
  for (const compact of [false, true])
    it(`a backup stores a damaged block again ${compact ? 'after a compaction copied the damaged frame' : 'from the device'}`, async () => {
      const h = harness(root, 'hl', undefined, undefined, hourly);
      const dev = join(root, 'd.img');
      const opts = { devices: [{ path: dev, id: 'd' }], blockSize: BS };
      const img = randomBytes(8 * BS);
      writeFileSync(dev, img);
      const r1 = await h.backup(opts);
      const segment = r1.manifest.segments[0]?.id ?? '';
      randomBytes(5 * BS).copy(img, 0);
      writeFileSync(dev, img);
      await h.backup(opts);
      const entry = (await new SafeReader(h.store, 'hl').segmentEntries(segment))[7];
      const file = join(root, 'safe', 'seg', segment.slice(0, 2), `${segment}.seg`);
      const bytes = readFileSync(file);
      bytes[(entry?.offset ?? 0) + 54] = (bytes[(entry?.offset ?? 0) + 54] ?? 0) ^ 0xff;
      writeFileSync(file, bytes);
      await h.store.putIfAbsent(
        damageKey('hl', segment, '0123456789abcdef'),
        encodeJson({
          format: 'cdp-damage',
          version: 2,
          segment,
          frames: [{ first: 7, count: 1, reason: 'checksum mismatch' }],
          foundAt: new Date().toISOString(),
          foundBy: 'verify',
          rp: 2,
          device: 'd',
        }),
      );
      if (compact)
        expect(
          (await compactSafe(h.store, 'hl', { policy: keep(1), owner: 'c', graceMs: 0 })).segmentsRewritten,
        ).toBe(1);
      const r3 = await h.backup(opts);
      expect(r3.notes.join('\n')).toMatch(/1 block\(s\) whose stored frames verify found damaged/);
      expect(await new SafeReader(h.store, 'hl').readImage(r3.rp, 'd')).toEqual(img);
    });
});

describe('the compaction function', () => {
  it('a finish task retried after a throttled catalog update brings the catalog up to date and frees the safe', async () => {
    const h = harness(root, 'fr', undefined, undefined, hourly);
    const path = join(root, 'd.img');
    for (let i = 0; i < 4; i++) {
      writeFileSync(path, randomBytes(8 * BS));
      await h.backup({ devices: [{ path, id: 'd' }], blockSize: BS });
    }
    const catalog = new MemoryCatalog();
    for (let rp = 1; rp <= 4; rp++)
      await catalog.commitRp({
        safe: 'fr',
        rp,
        state: 'committed',
        parent: rp > 1 ? rp - 1 : null,
        createdAt: new Date().toISOString(),
        updatedAt: '',
        manifestKey: '',
        manifestSha256: '',
        agent: { id: 'a', version: 'v', host: 'h' },
        encrypted: false,
        devices: [],
        segmentCount: 0,
        changedBytes: 0,
        storedBytes: 0,
      } as never);
    let failures = 1;
    const record = catalog.recordGeneration.bind(catalog);
    catalog.recordGeneration = async (g) => {
      if (failures-- > 0)
        throw Object.assign(new Error('ProvisionedThroughputExceededException'), { name: 'Throttling' });
      return record(g);
    };
    const queue: CompactionTask[] = [{ action: 'compact', safe: 'fr' }];
    const deps = {
      catalog,
      storeFor: () => h.store,
      send: async (t: readonly CompactionTask[]) => void queue.push(...t),
      defaultPolicy: keep(1),
      graceMs: 0,
      maxDeltas: 7,
      inline: 0,
      owner: 'fn',
      now: () => new Date(),
    };
    const outcomes: string[] = [];
    for (let task = queue.shift(); task; task = queue.shift()) {
      try {
        outcomes.push(`${task.action}:${(await handleCompactionTask(deps, task)).outcome}`);
      } catch {
        outcomes.push(`${task.action}:failed`);
        queue.push(task);
      }
    }
    expect(outcomes).toContain('finish:failed');
    expect((await catalog.getSafe('fr'))?.generation).toBe(1);
    expect([1, 2, 3, 4].map((rp) => catalog.rps.get(`fr#${rp}`)?.state)).toEqual([
      'expired',
      'expired',
      'expired',
      'committed',
    ]);
    expect(await h.store.list('safes/fr/locks/')).toEqual([]);
  });
});
