/**
 * Multi-Point Replication: copies only what a destination lacks, is safe while a backup writes to
 * the primary, survives being killed at any write and resumes, and every RP of every copy restores
 * byte for byte.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsObjectStore } from '#adapters/fs-store.ts';
import { compactSafe } from '#core/compaction/compact.ts';
import { SafeReader } from '#core/safe-reader.ts';
import { replicateSafe } from '../../../agent/replicate/replicate-safe.ts';
import { type Harness, harness } from '../../support/backup-harness.ts';
import { FaultyStore, InjectedCrash } from '../../support/fakes/faulty-store.ts';
import { sha256 } from '../../support/read-image.ts';

const BS = 4096;
let root: string;
let h: Harness;
let dev: string;
const images: string[] = [];

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'repl-'));
  h = harness(root);
  dev = join(root, 'd.img');
  images.length = 0;
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

async function backupRps(n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const img = Buffer.concat([randomBytes(6 * BS), Buffer.alloc(4 * BS), randomBytes(3 * BS)]);
    if (i > 0) img.fill(7, 0, BS); // some change each time, plus dedup-able content
    writeFileSync(dev, img);
    await h.backup({ devices: [{ path: dev, id: 'd' }], blockSize: BS });
    images.push(sha256(img));
  }
}

async function everyRpRestores(store: FsObjectStore): Promise<number[]> {
  const reader = new SafeReader(store, h.safe);
  const rps = await reader.listRps();
  for (const rp of rps) expect(sha256(await reader.readImage(rp, 'd')), `RP ${rp}`).toBe(images[rp - 1]);
  return rps;
}

describe('replicate', () => {
  it('copies an RP whose parent the source compacted away before it was replicated, with full maps', async () => {
    await backupRps(3);
    const policy = { last: 1, hourly: 0, daily: 0, weekly: 0, monthly: 0, locked: [] };
    await compactSafe(h.store, h.safe, { policy, owner: 't' });
    const dst = new FsObjectStore(join(root, 'fresh'), h.safe);
    const r = await replicateSafe(h.store, dst, h.safe);
    expect(r.copiedRps).toEqual([3]);
    const m = await new SafeReader(dst, h.safe).manifest(3);
    expect(m.parent).toBe(2); // the source's parent, absent here: every device map is full instead
    expect(m.devices.every((d) => d.full === true)).toBe(true);
    expect(await everyRpRestores(dst)).toEqual([3]);
    await backupRps(1); // later RPs build on RP 3 there as usual
    expect((await replicateSafe(h.store, dst, h.safe)).copiedRps).toEqual([4]);
    expect(await everyRpRestores(dst)).toEqual([3, 4]);
  });

  it('copies only what the destination lacks, segments as they are, manifest last', async () => {
    await backupRps(2);
    const dst = new FsObjectStore(join(root, 'copy'), h.safe);
    const first = await replicateSafe(h.store, dst, h.safe);
    expect(first.copiedRps).toEqual([1, 2]);
    expect(await everyRpRestores(dst)).toEqual([1, 2]);
    const again = await replicateSafe(h.store, dst, h.safe);
    expect(again).toMatchObject({ copiedRps: [], copiedBytes: 0 });
    await backupRps(1);
    const third = await replicateSafe(h.store, dst, h.safe);
    expect(third.copiedRps).toEqual([3]);
    const m = await new SafeReader(h.store, h.safe).manifest(3);
    const segBytes = m.segments.reduce((a, s) => a + s.bytes, 0) + m.devices[0]!.blockMap.bytes;
    expect(third.copiedBytes).toBe(segBytes);
    expect(await everyRpRestores(dst)).toEqual([1, 2, 3]);
  });

  it('is safe while a backup writes to the primary', async () => {
    await backupRps(1);
    const dst = new FsObjectStore(join(root, 'copy'), h.safe);
    const [r] = await Promise.all([replicateSafe(h.store, dst, h.safe), backupRps(2)]);
    expect(r.copiedRps[0]).toBe(1);
    await everyRpRestores(dst);
    await replicateSafe(h.store, dst, h.safe);
    expect(await everyRpRestores(dst)).toEqual([1, 2, 3]);
  });

  it('killed at every write, never shows a partial RP, and resumes without copying again', async () => {
    await backupRps(3);
    const full = await replicateSafe(h.store, new FsObjectStore(join(root, 'copy-all'), h.safe), h.safe);
    for (let crashAt = 0; ; crashAt++) {
      const dir = join(root, `copy-${crashAt}`);
      const dst = new FsObjectStore(dir, h.safe);
      let crashed = false;
      try {
        await replicateSafe(h.store, new FaultyStore(dst, crashAt), h.safe);
      } catch (e) {
        if (!(e instanceof InjectedCrash)) throw e;
        crashed = true;
      }
      await everyRpRestores(dst); // whatever is visible is complete
      const resumed = await replicateSafe(h.store, dst, h.safe);
      expect(await everyRpRestores(dst)).toEqual([1, 2, 3]);
      // what the killed run had made durable is not sent again
      expect(resumed.copiedBytes).toBeLessThanOrEqual(full.copiedBytes);
      if (crashAt > 2) expect(resumed.copiedBytes).toBeLessThan(full.copiedBytes);
      if (!crashed) {
        expect(resumed.copiedRps).toEqual([]);
        expect(crashAt).toBeGreaterThan(3);
        break;
      }
    }
  });

  it('refuses a destination that holds another safe of the same name', async () => {
    await backupRps(1);
    const other = harness(join(root, 'other'), h.safe, undefined, 'agent-9');
    writeFileSync(dev, randomBytes(4 * BS));
    await other.backup({ devices: [{ path: dev, id: 'd' }], blockSize: BS });
    await expect(replicateSafe(h.store, other.store, h.safe)).rejects.toThrow(/holds another safe test-safe/);
  });

  it('never makes a destination reference what its own compaction retired: such segments are copied under new ids', async () => {
    const a = Buffer.concat([randomBytes(8 * BS), Buffer.alloc(2 * BS)]);
    const b = randomBytes(10 * BS);
    for (const img of [a, b]) {
      writeFileSync(dev, img);
      await h.backup({ devices: [{ path: dev, id: 'd' }], blockSize: BS });
    }
    const dst = new FsObjectStore(join(root, 'offsite'), h.safe);
    expect((await replicateSafe(h.store, dst, h.safe)).copiedRps).toEqual([1, 2]);
    // the destination keeps only the last RP: RP 1's segments become its garbage
    const keepLast = { last: 1, hourly: 0, daily: 0, weekly: 0, monthly: 0, locked: [] };
    await compactSafe(dst, h.safe, { policy: keepLast, owner: 'offsite', graceMs: 0 });
    // the source (not compacted) takes RP 3 with RP 1's content: deduplicated against RP 1's segments
    writeFileSync(dev, a);
    const r3 = await h.backup({ devices: [{ path: dev, id: 'd' }], blockSize: BS });
    expect(r3.manifest.devices[0]!.dedupBlocks).toBe(8);
    const dstGen = (await new SafeReader(dst, h.safe).generation())!.generation;
    const r = await replicateSafe(h.store, dst, h.safe);
    expect(r.copiedRps).toEqual([3]); // RP 1, expired by the destination's own retention, is not sent again
    expect(r.rescuedSegments).toBeGreaterThan(0);
    // the destination's garbage collection now deletes RP 1's segments; RP 3 does not need them
    for (let i = 0; i < 2; i++)
      await compactSafe(dst, h.safe, { policy: keepLast, owner: 'offsite', graceMs: 0 });
    const reader = new SafeReader(dst, h.safe);
    expect(sha256(await reader.readImage(3, 'd'))).toBe(sha256(a));
    const m = await reader.manifest(3);
    expect(m.view).toBe(dstGen); // the destination's own view, not the source's
    expect(m.segments.length).toBeGreaterThan(0); // the copies are listed as this RP's segments
  });
});
