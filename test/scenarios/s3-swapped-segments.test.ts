/**
 * Scenario 3 (issue 15): two segment files swapped. Before, with equal frame counts `verify` said
 * "all restorable" and each RP restored the other's bytes with exit 0; with different counts the
 * agent died with a TypeError. Now a segment proves its identity (its id and safe are in its footer)
 * and a swap is named by verify (exit 8) and by restore (exit 4), never restored.
 */
import { readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fresh, MiB, safeAt, tempDir, writeImage } from './support.ts';

const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

function firstSegment(dir: string, rp: number): string {
  const m = JSON.parse(readFileSync(join(dir, 'rp', `${String(rp).padStart(10, '0')}.json`), 'utf8'));
  const key: string = m.segments[0].key;
  return join(dir, key.split('/').slice(2).join('/'));
}

async function swapped(changedBlocks: number) {
  const root = tempDir('s3');
  roots.push(root);
  const safe = safeAt(root);
  const dev = join(root, 'disk.img');
  const img = fresh(MiB); // 16 blocks of 64 KiB: one segment of 16 frames
  writeImage(dev, img);
  expect((await safe.backup(dev)).code).toBe(0);
  fresh(changedBlocks * 64 * 1024).copy(img, 0);
  writeImage(dev, img);
  expect((await safe.backup(dev)).code).toBe(0);
  const s1 = firstSegment(safe.dir, 1);
  const s2 = firstSegment(safe.dir, 2);
  renameSync(s1, `${s1}.x`);
  renameSync(s2, s1);
  renameSync(`${s1}.x`, s2);
  return { root, safe, s1, s2 };
}

describe('scenario 3: swapped segments', () => {
  for (const changed of [16, 8]) {
    it(`are named, never restored (${changed === 16 ? 'equal' : 'different'} frame counts)`, async () => {
      const { root, safe } = await swapped(changed);
      const v = await safe.verify();
      expect(v.code, v.stdout + v.stderr).toBe(8);
      expect(v.stdout).toMatch(/holds segment [0-9a-f]{64}|not segment/);
      expect(v.stderr).not.toMatch(/TypeError/);
      for (const rp of ['1', '2']) {
        const r = await safe.restore(rp, join(root, `out-${rp}.img`));
        expect(r.code, r.stderr).toBe(4);
        expect(r.stderr).toMatch(/segment [0-9a-f]{64}.*(holds segment|swapped)/);
        expect(r.stderr).not.toMatch(/TypeError/);
      }
    }, 60_000);
  }
});
