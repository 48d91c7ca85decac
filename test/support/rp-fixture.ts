/**
 * A small real safe for index tests: the backup use case writes RP 1 (full) and RP 2 (incremental
 * whose map also reuses an RP 1 segment through dedup) into a directory safe; `copy` clones it so
 * each case can damage its own copy.
 */
import { randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FsObjectStore } from '#adapters/fs-store.ts';
import { manifestKey, safeConfigKey } from '#core/keys.ts';
import type { ObjectCreatedEvent } from '#core/s3-event.ts';
import { harness } from './backup-harness.ts';

export const BS = 4096;
export const DEVICE = 'd';

export interface RpFixture {
  readonly root: string;
  readonly safe: string;
  /** The device image at RP 1 and RP 2. */
  readonly images: readonly [Buffer, Buffer];
  /** Every key of the safe, for uploading in any order. */
  readonly keys: readonly string[];
  /** The block map key of the device in each RP. */
  readonly maps: Readonly<Record<number, string>>;
}

export async function makeRpFixture(safe = 'fx'): Promise<RpFixture> {
  const root = mkdtempSync(join(tmpdir(), 'rpfx-'));
  const h = harness(root, safe);
  const path = join(root, 'd.img');
  const img1 = randomBytes(24 * BS);
  img1.fill(0, 20 * BS); // four zero blocks
  writeFileSync(path, img1);
  await h.backup({ devices: [{ path, id: DEVICE }], blockSize: BS, segmentBytes: 8 * BS });
  const img2 = Buffer.from(img1);
  randomBytes(3 * BS).copy(img2, 2 * BS);
  img1.copy(img2, 10 * BS, 0, BS); // block 10 := block 0, stored once (dedup reference to RP 1)
  img2.fill(0, 15 * BS, 16 * BS);
  writeFileSync(path, img2);
  await h.backup({ devices: [{ path, id: DEVICE }], segmentBytes: 8 * BS });
  const keys = (await h.store.list(`safes/${safe}/`)).map((o) => o.key).filter((k) => !k.includes('/locks/'));
  const maps: Record<number, string> = {};
  for (const rp of [1, 2]) {
    const m = JSON.parse((await h.store.get(manifestKey(safe, rp))).toString());
    maps[rp] = m.devices[0].blockMap.key;
  }
  return { root, safe, images: [img1, readFileSync(path)], keys, maps };
}

/** A private copy of the fixture's safe. */
export function copySafe(fx: RpFixture): { dir: string; store: FsObjectStore } {
  const dir = mkdtempSync(join(tmpdir(), 'rpcopy-'));
  cpSync(join(fx.root, 'safe'), dir, { recursive: true });
  return { dir, store: new FsObjectStore(dir, fx.safe) };
}

export function objectCreated(bucket: string, key: string, size = 0): ObjectCreatedEvent {
  return {
    source: 'aws.s3',
    'detail-type': 'Object Created',
    time: new Date().toISOString(),
    detail: { bucket: { name: bucket }, object: { key, size } },
  };
}

export const keysOf = (fx: () => RpFixture) => ({
  get config(): string {
    return safeConfigKey(fx().safe);
  },
  manifest: (rp: number) => manifestKey(fx().safe, rp),
  map: (rp: number) => fx().maps[rp]!,
});
