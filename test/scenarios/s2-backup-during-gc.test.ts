/**
 * Scenario 2 (issue 15): a backup overlapping compaction and garbage collection. RP 1 holds image A,
 * RP 2 image B, the policy keeps the last RP only; a third backup (new data first, then blocks only
 * RP 1 held, slowed by --bwlimit) runs while `compact --grace 0s` runs twice. Before the lock
 * protocol the second compaction deleted RP 1's segments under the backup, which then committed an
 * RP that did not restore. Now the RP restores byte for byte, and so does it after a later GC.
 */
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startAgent } from '../support/agent-cli.ts';
import { files, fresh, jsonOut, MiB, safeAt, sha256, tempDir, writeImage } from './support.ts';

const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

function segmentCount(dir: string): number {
  return [...files(join(dir, 'seg')).keys()].filter((k) => k.endsWith('.seg')).length;
}

describe('scenario 2: a backup overlapping compaction and GC', () => {
  it('commits an RP that restores, even with a zero grace period', async () => {
    const root = tempDir('s2');
    roots.push(root);
    const safe = safeAt(root);
    const dev = join(root, 'disk.img');
    const a = fresh(4 * MiB);
    const b = fresh(4 * MiB); // RP 2 shares nothing with RP 1
    writeImage(dev, a);
    expect((await safe.backup(dev)).code).toBe(0);
    writeImage(dev, b);
    expect((await safe.backup(dev)).code).toBe(0);
    const p = await safe.policy('--last', '1');
    expect(p.code, p.stderr).toBe(0);
    // C: 3 MiB of new data first, then a MiB that only RP 1 holds (deduplicated against it)
    const c = Buffer.concat([fresh(3 * MiB), a.subarray(0, MiB)]);
    writeImage(dev, c);
    const before = segmentCount(safe.dir);
    const third = startAgent([
      'backup',
      '--safe',
      safe.dir,
      '--device',
      `${dev}=disk`,
      '--state-dir',
      safe.stateDir,
      '--json',
      '--bwlimit',
      '512k',
      '--segment-size',
      '512k',
    ]);
    // wait until the backup is uploading (its first segment is durable), then compact twice
    while (segmentCount(safe.dir) === before) {
      if (third.child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(third.child.exitCode, 'the backup finished before the compactions started').toBeNull();
    for (let i = 0; i < 2; i++) {
      const r = await safe.compact('--grace', '0s');
      expect(r.code, r.stderr).toBe(0);
    }
    const done = await third.done;
    expect(done.code, done.stderr).toBe(0);
    const rp = jsonOut(done)!.rp as number;
    expect(rp).toBe(3);
    expect(await safe.restoredSha('latest')).toBe(sha256(c));
    // a later GC keeps what RP 3 references
    for (let i = 0; i < 2; i++) expect((await safe.compact('--grace', '0s')).code).toBe(0);
    expect(await safe.restoredSha(3)).toBe(sha256(c));
    const v = await safe.verify();
    expect(v.code, v.stdout).toBe(0);
    expect(readdirSync(join(safe.dir, 'rp'))).toContain('0000000003.json');
  }, 120_000);
});
