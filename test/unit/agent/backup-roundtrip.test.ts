/**
 * Property: for random histories of writes and backups on 1- and 2-device safes, encrypted and
 * not, reading the safe back reproduces every recovery point's images exactly.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { deriveKeys } from '#core/format/crypto.ts';
import { decodeSafeConfig } from '#core/format/manifest.ts';
import { safeConfigKey } from '#core/keys.ts';
import { SafeReader } from '#core/safe-reader.ts';
import { harness } from '../../support/backup-harness.ts';
import { readImage, sha256 } from '../../support/read-image.ts';

const BS = 4096;
const SIZES = [37 * BS, 20 * BS + 123];

type Fill = 'zero' | 'random' | 'text' | 'copy';
interface Write {
  readonly device: number;
  readonly offset: number;
  readonly length: number;
  readonly fill: Fill;
}

const write = fc.record({
  device: fc.integer({ min: 0, max: 1 }),
  offset: fc.integer({ min: 0, max: SIZES[1]! - 1 }),
  length: fc.integer({ min: 1, max: 5 * BS }),
  fill: fc.constantFrom<Fill>('zero', 'random', 'text', 'copy'),
});
const step = fc.oneof(write, fc.constant('backup' as const));

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
            const key = encrypted ? randomBytes(32) : undefined;
            const h = harness(root);
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
                expect(r.rp).toBe(expected.length + 1);
                expected.push(imgs.map(sha256));
              } else apply(imgs, s, paths);
            }
            const cfg = decodeSafeConfig(await h.store.get(safeConfigKey(h.safe)), 'safe.json');
            const keys =
              key && cfg.encryption ? deriveKeys(key, Buffer.from(cfg.encryption.salt, 'base64')) : undefined;
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
