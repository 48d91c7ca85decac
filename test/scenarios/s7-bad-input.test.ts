/**
 * Scenario 7 (issue 15): bad input never damages anything. Before, `backup` without `--device`
 * committed an RP with no devices that made the safe unusable; `restore --to` an existing unrelated
 * file (a text file, a larger image, the source device itself) overwrote it as a "delta restore";
 * a full disk ended in "worker exited with code 1" and left a `.tmp-` file eating the space, and
 * `.tmp-` files of killed runs stayed forever.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { agent, startAgent } from '../support/agent-cli.ts';
import { files, fresh, jsonOut, MiB, safeAt, sha256, tempDir, writeImage } from './support.ts';

const roots: string[] = [];
const mounts: string[] = [];
afterAll(() => {
  for (const m of mounts) execFileSync('umount', ['-l', m]);
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

const tmpFiles = (dir: string) => [...files(dir).keys()].filter((k) => k.includes('.tmp-'));

describe('scenario 7: bad input', () => {
  it('a backup without --device is refused before anything is written', async () => {
    const root = tempDir('s7');
    roots.push(root);
    const dir = join(root, 'safe1');
    const r = await agent(['backup', '--safe', dir, '--state-dir', join(root, 'state'), '--json']);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/--device/);
    expect(existsSync(dir)).toBe(false);
  }, 30_000);

  it('restore refuses to overwrite a file that is not an earlier copy of the device', async () => {
    const root = tempDir('s7r');
    roots.push(root);
    const safe = safeAt(root);
    const dev = join(root, 'disk.img');
    const img = fresh(MiB);
    writeImage(dev, img);
    expect((await safe.backup(dev)).code).toBe(0);
    const text = join(root, 'notes.txt');
    writeFileSync(text, 'my precious notes\n'.repeat(1000));
    const larger = join(root, 'larger.img');
    writeFileSync(larger, fresh(3 * MiB));
    for (const target of [text, larger]) {
      const before = sha256(readFileSync(target));
      const r = await safe.restore('1', target);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/--overwrite/);
      expect(sha256(readFileSync(target))).toBe(before);
    }
    // the device the RP was taken from is not overwritten without being asked either
    fresh(64 * 1024).copy(img, 0);
    writeImage(dev, img);
    const live = await safe.restore('1', dev);
    expect(live.code, live.stderr).toBe(2);
    expect(live.stderr).toMatch(/taken from/);
    expect(sha256(readFileSync(dev))).toBe(sha256(img));
    // an earlier copy of the device is recognised, and --overwrite replaces anything
    const copy = join(root, 'copy.img');
    writeFileSync(copy, img);
    expect((await safe.restore('1', copy)).code).toBe(0);
    const forced = await safe.restore('1', text, '--overwrite');
    expect(forced.code, forced.stderr).toBe(0);
    expect(sha256(readFileSync(text))).toBe(sha256(readFileSync(copy)));
  }, 60_000);

  it('a full disk is named (ENOSPC), its temporary files are removed, and a retry succeeds', async () => {
    const root = tempDir('s7s');
    roots.push(root);
    const mnt = join(root, 'small');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=12m', 'tmpfs', mnt]);
    mounts.push(mnt);
    const filler = join(mnt, 'filler');
    writeFileSync(filler, Buffer.alloc(6 * MiB, 1));
    // the safe's filesystem is full; the agent's state lives elsewhere (as /var/lib does)
    const safe = safeAt(mnt, 'safe1', 'disk', join(root, 'state'));
    const dev = join(root, 'disk.img');
    const img = fresh(8 * MiB);
    writeImage(dev, img);
    const r = await safe.backup(dev, '--segment-size', '2M');
    expect(r.code, r.stderr).toBe(4);
    expect(r.stderr).toMatch(/ENOSPC|no space left/i);
    expect(r.stderr).not.toMatch(/worker exited/);
    expect(tmpFiles(safe.dir)).toEqual([]);
    unlinkSync(filler);
    const again = await safe.backup(dev, '--segment-size', '2M');
    expect(again.code, again.stderr).toBe(0);
    const out = join(root, 'restored.img'); // off the small filesystem
    const r2 = await safe.restore(String(jsonOut(again)!.rp), out);
    expect(r2.code, r2.stderr).toBe(0);
    expect(sha256(readFileSync(out))).toBe(sha256(img));
  }, 60_000);

  it('a full state directory is named (ENOSPC, its path), nothing committed is lost, and a retry succeeds', async () => {
    const root = tempDir('s7t');
    roots.push(root);
    const mnt = join(root, 'state-fs');
    mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mnt]);
    mounts.push(mnt);
    // fill the state's filesystem to the last block
    const filler = join(mnt, 'filler');
    try {
      writeFileSync(filler, Buffer.alloc(512 * 1024, 1));
    } catch (e) {
      expect((e as NodeJS.ErrnoException).code).toBe('ENOSPC');
    }
    const safe = safeAt(root, 'safe1', 'disk', join(mnt, 'state'));
    const dev = join(root, 'disk.img');
    const img = fresh(4 * MiB);
    writeImage(dev, img);
    const r = await safe.backup(dev);
    expect(r.code, r.stderr).toBe(4);
    expect(r.stderr).toMatch(/"code":"E_NO_SPACE"/);
    expect(r.stderr).toContain(mnt);
    const v = await safe.verify();
    expect([0, 4], v.stdout + v.stderr).toContain(v.code); // whatever is there verifies, or there is no RP yet
    expect(v.stdout).not.toMatch(/"error"/);
    unlinkSync(filler);
    const again = await safe.backup(dev);
    expect(again.code, again.stderr).toBe(0);
    expect(await safe.restoredSha(String(jsonOut(again)!.rp))).toBe(sha256(img));
  }, 60_000);

  it('temporary files of a killed run are cleaned by the next run', async () => {
    const root = tempDir('s7k');
    roots.push(root);
    const safe = safeAt(root);
    const dev = join(root, 'disk.img');
    writeImage(dev, fresh(8 * MiB));
    const run = startAgent([
      'backup',
      '--safe',
      safe.dir,
      '--device',
      `${dev}=disk`,
      '--state-dir',
      safe.stateDir,
      '--json',
      '--bwlimit',
      '1M',
      '--segment-size',
      '4M',
    ]);
    while (tmpFiles(safe.dir).length === 0 && run.child.exitCode === null)
      await new Promise((r) => setTimeout(r, 20));
    run.child.kill('SIGKILL');
    await run.done;
    expect(tmpFiles(safe.dir).length).toBeGreaterThan(0);
    const r = await safe.backup(dev);
    expect(r.code, r.stderr).toBe(0);
    expect(tmpFiles(safe.dir)).toEqual([]);
  }, 60_000);
});
