/**
 * Scenario 4 (issue 15): a backup on top of a damaged chain. Before, with local state present, the
 * new RP built on whatever the chain was (a missing map, a bad manifest, a lost or damaged segment)
 * and exited 0 with an RP that did not restore; a corrupt frame was inherited by every later RP.
 * Now the backup checks the chain it builds on and re-reads from the device what it cannot rely on,
 * and a frame `verify` found bad is stored again from the device: the new RP restores byte for byte.
 */
import { readFileSync, rmSync, statSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fresh, jsonOut, MiB, type Safe, safeAt, sha256, tempDir, writeImage } from './support.ts';

const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

const BLOCK = 64 * 1024;

function manifestPath(dir: string, rp: number): string {
  return join(dir, 'rp', `${String(rp).padStart(10, '0')}.json`);
}
function objectPath(dir: string, key: string): string {
  return join(dir, key.split('/').slice(2).join('/'));
}
function manifest(dir: string, rp: number) {
  return JSON.parse(readFileSync(manifestPath(dir, rp), 'utf8'));
}
function flip(path: string, at: number): void {
  const b = readFileSync(path);
  const o = at < 0 ? b.length + at : at;
  b[o] = b[o]! ^ 0x5a;
  writeFileSync(path, b);
}

type Damage = (dir: string) => void;
const seg1 = (dir: string) => objectPath(dir, manifest(dir, 1).segments[0].key);
const damages: Record<string, Damage> = {
  'bad parent manifest': (dir) => writeFileSync(manifestPath(dir, 2), '{"not": "a manifest"'),
  'missing parent manifest': (dir) => unlinkSync(manifestPath(dir, 2)),
  'bad map in the chain': (dir) => flip(objectPath(dir, manifest(dir, 1).devices[0].blockMap.key), -3),
  'missing map in the chain': (dir) => unlinkSync(objectPath(dir, manifest(dir, 2).devices[0].blockMap.key)),
  'missing segment': (dir) => unlinkSync(seg1(dir)),
  'truncated segment': (dir) => truncateSync(seg1(dir), statSync(seg1(dir)).size - 100),
  'bad segment trailer': (dir) => flip(seg1(dir), -12),
  'bad segment index': (dir) => flip(seg1(dir), -40),
  'bad frame (found by verify)': (dir) => flip(seg1(dir), 16 + 10 * (44 + BLOCK) + 1000),
};

async function chainThenDamage(
  name: string,
  damage: Damage,
): Promise<{ safe: Safe; dev: string; img: Buffer; root: string }> {
  const root = tempDir('s4');
  roots.push(root);
  const safe = safeAt(root);
  const dev = join(root, 'disk.img');
  const img = fresh(MiB);
  writeImage(dev, img);
  expect((await safe.backup(dev)).code).toBe(0);
  fresh(2 * BLOCK).copy(img, 0);
  writeImage(dev, img);
  expect((await safe.backup(dev)).code).toBe(0);
  damage(safe.dir);
  if (name.includes('verify')) {
    const v = await safe.verify();
    expect(v.code, v.stdout).toBe(8);
  }
  return { safe, dev, img, root };
}

describe('scenario 4: a backup on a damaged chain', () => {
  for (const [name, damage] of Object.entries(damages)) {
    it(`${name}: the next RP restores byte for byte`, async () => {
      const { safe, dev, img } = await chainThenDamage(name, damage);
      fresh(BLOCK).copy(img, 2 * BLOCK);
      writeImage(dev, img);
      const r = await safe.backup(dev);
      expect(r.code, r.stderr).toBe(0);
      const rp = jsonOut(r)!.rp as number;
      expect(await safe.restoredSha(rp)).toBe(sha256(img));
      const v = await safe.verify('--rp', String(rp));
      expect(v.code, v.stdout).toBe(0);
    }, 60_000);
  }
});
