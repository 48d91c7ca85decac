/**
 * Scenario 1 (issue 15): two backups of the same device into one safe at the same time. Before the
 * lock protocol the loser of the manifest race had already replaced the winner's block map, so the
 * winner's RP (and every later one) no longer restored. Now at most one of them commits each RP,
 * the other exits 5 (run again), and every RP the safe lists restores byte for byte.
 */

import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startAgent } from '../support/agent-cli.ts';
import { fresh, jsonOut, MiB, safeAt, sha256, tempDir, writeImage } from './support.ts';

const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

describe('scenario 1: concurrent backups of the same device', () => {
  it('never corrupt the safe: each RP is committed once and restores byte for byte', async () => {
    const root = tempDir('s1');
    roots.push(root);
    const safe = safeAt(root);
    const dev = join(root, 'disk.img');
    let img = fresh(6 * MiB);
    writeImage(dev, img);
    const first = await safe.backup(dev);
    expect(first.code, first.stderr).toBe(0);
    const expected = new Map<number, string>([[1, sha256(img)]]);
    let corruptions = 0;
    for (let trial = 0; trial < 4; trial++) {
      img = Buffer.from(img);
      fresh(MiB).copy(img, (trial % 5) * MiB);
      writeImage(dev, img);
      const args = ['--bwlimit', '4M', '--segment-size', '1M'];
      const a = startAgent([
        'backup',
        '--safe',
        safe.dir,
        '--device',
        `${dev}=disk`,
        '--state-dir',
        safe.stateDir,
        '--json',
        ...args,
      ]);
      const b = startAgent([
        'backup',
        '--safe',
        safe.dir,
        '--device',
        `${dev}=disk`,
        '--state-dir',
        safe.stateDir,
        '--json',
        ...args,
      ]);
      const [ra, rb] = await Promise.all([a.done, b.done]);
      for (const r of [ra, rb]) {
        expect([0, 5], r.stderr).toContain(r.code);
        if (r.code === 0) {
          const rp = jsonOut(r)!.rp as number;
          expect(expected.has(rp), `RP ${rp} reported committed twice`).toBe(false);
          expected.set(rp, sha256(img));
        }
      }
      if (ra.code !== 0 && rb.code !== 0) {
        // both backed off: a rerun alone commits
        const r = await safe.backup(dev);
        expect(r.code, r.stderr).toBe(0);
        expected.set(jsonOut(r)!.rp as number, sha256(img));
      }
      for (const [rp, want] of expected)
        if ((await safe.restoredSha(rp).catch(() => '')) !== want) corruptions++;
    }
    expect(corruptions).toBe(0);
    const v = await safe.verify();
    expect(v.code, v.stdout + v.stderr).toBe(0);
  }, 120_000);
});
