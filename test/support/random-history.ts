/**
 * Random histories of writes and backups on 1- and 2-device safes, encrypted or not, for property
 * tests: `runHistory` plays one and returns the safe with each RP's expected device hashes.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { deriveKeys, type SafeKeys } from '#core/format/crypto.ts';
import { decodeSafeConfig } from '#core/format/manifest.ts';
import { safeConfigKey } from '#core/keys.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import { type Harness, harness } from './backup-harness.ts';
import { sha256 } from './read-image.ts';

export const BS = 4096;
export const SIZES = [37 * BS, 20 * BS + 123];

type Fill = 'zero' | 'random' | 'text' | 'copy';
interface Write {
  readonly device: number;
  readonly offset: number;
  readonly length: number;
  readonly fill: Fill;
}
export type Step = Write | 'backup' | 'compact';

const write = fc.record({
  device: fc.integer({ min: 0, max: 1 }),
  offset: fc.integer({ min: 0, max: SIZES[1]! - 1 }),
  length: fc.integer({ min: 1, max: 5 * BS }),
  fill: fc.constantFrom<Fill>('zero', 'random', 'text', 'copy'),
});
export const step: fc.Arbitrary<Step> = fc.oneof(write, fc.constant('backup' as const));

function apply(imgs: Buffer[], w: Write, paths: string[]): void {
  const img = imgs[w.device % imgs.length]!;
  const off = w.offset % img.length;
  const len = Math.min(w.length, img.length - off);
  const data =
    w.fill === 'zero'
      ? Buffer.alloc(len)
      : w.fill === 'random'
        ? randomBytes(len)
        : w.fill === 'text'
          ? Buffer.alloc(len, 'the quick brown fox ')
          : Buffer.from(img.subarray(0, len)); // a copy of another region: dedup material
  data.copy(img, off);
  const fd = openSync(paths[w.device % imgs.length]!, 'r+');
  writeSync(fd, data, 0, len, off);
  closeSync(fd);
}

export interface History {
  readonly h: Harness;
  /** expected[rp - 1][device] = sha256 of the device image at that RP. */
  readonly expected: string[][];
  readonly key: Buffer | undefined;
  readonly keys: SafeKeys | undefined;
}

export async function runHistory(
  root: string,
  nDevices: number,
  encrypted: boolean,
  steps: Step[],
  at: {
    safe?: string;
    store?: ObjectStore;
    now?: () => Date;
    /** Runs a 'compact' step; `expected` so far is passed for checks. */
    onCompact?: (h: Harness, expected: string[][], keys: SafeKeys | undefined) => Promise<void>;
  } = {},
): Promise<History> {
  const key = encrypted ? randomBytes(32) : undefined;
  const h = harness(root, at.safe, at.store, undefined, at.now);
  let keys: SafeKeys | undefined;
  const imgs = SIZES.slice(0, nDevices).map((n) => Buffer.alloc(n));
  const paths = imgs.map((_, i) => join(root, `dev${i}.img`));
  imgs.forEach((b, i) => {
    b.fill(i + 1, 0, BS * 3);
    writeFileSync(paths[i]!, b);
  });
  const devices = paths.map((path, i) => ({ path, id: `dev${i}` }));
  const expected: string[][] = [];
  for (const s of [...steps, 'backup' as const]) {
    if (s === 'backup') {
      const r = await h.backup({ devices, key, blockSize: BS });
      if (r.rp !== expected.length + 1)
        throw new Error(`backup made RP ${r.rp}, expected ${expected.length + 1}`);
      expected.push(imgs.map(sha256));
      if (key && !keys) {
        const cfg = decodeSafeConfig(await h.store.get(safeConfigKey(h.safe)), 'safe.json');
        keys = cfg.encryption ? deriveKeys(key, Buffer.from(cfg.encryption.salt, 'base64')) : undefined;
      }
    } else if (s === 'compact') {
      if (expected.length > 0) await at.onCompact?.(h, expected, keys);
    } else apply(imgs, s, paths);
  }
  return { h, expected, key, keys };
}
