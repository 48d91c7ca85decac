/**
 * Scenario 5 (issue 15): lost metadata is never papered over. Before, a backup silently recreated a
 * deleted safe.json (a plaintext RP in an encrypted safe without the key; a new salt with it, so
 * every old RP failed authentication), and `compact` took a lost generation's maps for an
 * interrupted attempt and deleted them. Now a safe with RPs and no safe.json is an error with a
 * hint, and a missing generation is named and nothing is deleted on its account.
 */
import { randomBytes } from 'node:crypto';
import { existsSync as exists, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { files, fresh, MiB, safeAt, sha256, tempDir, writeImage } from './support.ts';

const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

describe('scenario 5: lost metadata', () => {
  for (const encrypted of [false, true]) {
    it(`a safe with RPs and no safe.json is an error, not a new safe (${encrypted ? 'encrypted' : 'plain'})`, async () => {
      const root = tempDir('s5');
      roots.push(root);
      const safe = safeAt(root);
      const dev = join(root, 'disk.img');
      writeImage(dev, fresh(MiB));
      const keyFile = join(root, 'key');
      writeFileSync(keyFile, randomBytes(32).toString('hex'));
      const key = encrypted ? ['--encrypt-key-file', keyFile] : [];
      expect((await safe.backup(dev, ...key)).code).toBe(0);
      unlinkSync(join(safe.dir, 'safe.json'));
      const attempts = encrypted ? [[], key] : [[]];
      for (const more of attempts) {
        const r = await safe.backup(dev, ...more);
        expect(r.code, r.stderr).toBe(4);
        expect(r.stderr).toMatch(/safe\.json is missing/);
        expect(r.stderr).toMatch(/hint/);
        expect(exists(join(safe.dir, 'safe.json'))).toBe(false);
        expect(readdirSync(join(safe.dir, 'rp'))).toEqual(['0000000001.json']);
      }
    }, 60_000);
  }

  it('a lost generation is named, and nothing is deleted on its account', async () => {
    const root = tempDir('s5g');
    roots.push(root);
    const safe = safeAt(root);
    const dev = join(root, 'disk.img');
    const img = fresh(MiB);
    for (let i = 0; i < 3; i++) {
      fresh(128 * 1024).copy(img, i * 128 * 1024);
      writeImage(dev, img);
      expect((await safe.backup(dev)).code).toBe(0);
    }
    expect((await safe.policy('--last', '1')).code).toBe(0);
    const c1 = await safe.compact();
    expect(c1.code, c1.stderr).toBe(0);
    const genDir = join(safe.dir, 'gen');
    const before = [...files(genDir).keys()].filter((k) => k.startsWith('0000000001/'));
    expect(before.length).toBeGreaterThan(0);
    unlinkSync(join(genDir, '0000000001.json'));
    const c2 = await safe.compact();
    expect(c2.stdout + c2.stderr).toMatch(/generation 1\b.*(missing|lost)/);
    const after = new Set(files(genDir).keys());
    for (const k of before) expect(after.has(k), `${k} was deleted`).toBe(true);
    expect(await safe.restoredSha('latest')).toBe(sha256(img));
  }, 60_000);
});
