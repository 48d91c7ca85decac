/**
 * Scenario 6 (issue 15): verify, list and replicate are honest. Before, `verify` printed NOT
 * RESTORABLE and exited 0; a manifest that was not JSON (or off its schema) made verify die with a
 * stack trace, skipping the intact RPs, and made list abort; verify and list "passed" on a path with
 * no safe; replicate copied damaged RPs with exit 0. Now every RP that is not restorable is named in
 * text and JSON with exit 8, the others are still checked, no safe is an error, and replicate
 * refuses a damaged RP by name.
 */
import { readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { agent } from '../support/agent-cli.ts';
import { fresh, jsonOut, MiB, safeAt, tempDir, writeImage } from './support.ts';

const roots: string[] = [];
afterAll(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

const BLOCK = 64 * 1024;
const mpath = (dir: string, rp: number) => join(dir, 'rp', `${String(rp).padStart(10, '0')}.json`);
const opath = (dir: string, key: string) => join(dir, key.split('/').slice(2).join('/'));
const manifest = (dir: string, rp: number) => JSON.parse(readFileSync(mpath(dir, rp), 'utf8'));

/** A safe with three RPs: a full, then two incrementals each writing new blocks into a new segment. */
async function threeRps() {
  const root = tempDir('s6');
  roots.push(root);
  const safe = safeAt(root);
  const dev = join(root, 'disk.img');
  const img = fresh(MiB);
  writeImage(dev, img);
  expect((await safe.backup(dev)).code).toBe(0);
  for (let i = 1; i <= 2; i++) {
    fresh(2 * BLOCK).copy(img, i * 4 * BLOCK);
    writeImage(dev, img);
    expect((await safe.backup(dev)).code).toBe(0);
  }
  return { root, safe, dev, img };
}

describe('scenario 6: honest verify and list', () => {
  it('an RP whose segment is missing: verify names it and exits 8', async () => {
    const { safe } = await threeRps();
    unlinkSync(opath(safe.dir, manifest(safe.dir, 3).segments[0].key));
    const v = await safe.verify();
    expect(v.code).toBe(8);
    const out = jsonOut(v)!;
    expect(out.ok).toBe(false);
    const results = out.results as { rp: number; error?: string; damaged?: unknown[] }[];
    expect(results.filter((r) => r.error || r.damaged?.length).map((r) => r.rp)).toEqual([3]);
    const text = await agent(['verify', '--safe', safe.dir]);
    expect(text.code).toBe(8);
    expect(text.stdout).toMatch(/RP 3 disk: NOT RESTORABLE/);
  }, 60_000);

  for (const [what, body] of [
    ['not JSON', '{"format": "cdp-manifest", "vers'],
    ['off its schema', JSON.stringify({ format: 'cdp-manifest', version: 1, safe: 'safe1', rp: 2 })],
  ] as const) {
    it(`a manifest that is ${what}: named, the other RPs still checked, exit 8`, async () => {
      const { safe } = await threeRps();
      writeFileSync(mpath(safe.dir, 2), body);
      const v = await safe.verify();
      expect(v.code, v.stderr).toBe(8);
      expect(v.stderr).not.toMatch(/\n\s+at /); // no stack trace
      const results = jsonOut(v)!.results as { rp: number; error?: string }[];
      expect(results.find((r) => r.rp === 2)?.error).toMatch(/manifest/);
      expect(results.filter((r) => r.rp === 1 && !r.error).length).toBe(1);
      const l = await safe.list();
      expect(l.code, l.stderr).toBe(8);
      const listed = jsonOut(l)!.recoveryPoints as { rp: number; damaged?: string }[];
      expect(listed.map((r) => r.rp)).toEqual([1, 2, 3]);
      expect(listed.find((r) => r.rp === 2)?.damaged).toMatch(/manifest/);
      const text = await agent(['list', '--safe', safe.dir]);
      expect(text.code).toBe(8);
      expect(text.stdout).toMatch(/2 .*DAMAGED/);
    }, 60_000);
  }

  it('verify and list of a path with no safe are errors', async () => {
    const root = tempDir('s6n');
    roots.push(root);
    for (const cmd of ['verify', 'list']) {
      const r = await agent([cmd, '--safe', join(root, 'nothing-here')]);
      expect(r.code, r.stdout).toBe(4);
      expect(r.stderr).toMatch(/no safe at/);
    }
  }, 30_000);
});

describe('scenario 6: honest replicate', () => {
  const damages: Record<string, (dir: string) => void> = {
    'a block map that does not match its manifest': (dir) => {
      const p = opath(dir, manifest(dir, 2).devices[0].blockMap.key);
      const b = readFileSync(p);
      b[b.length - 2] = b[b.length - 2]! ^ 1;
      writeFileSync(p, b);
    },
    'a corrupt frame': (dir) => {
      const p = opath(dir, manifest(dir, 2).segments[0].key);
      const b = readFileSync(p);
      b[16 + 44 + 500] = b[16 + 44 + 500]! ^ 0xff;
      writeFileSync(p, b);
    },
    'swapped segments': (dir) => {
      const a = opath(dir, manifest(dir, 2).segments[0].key);
      const c = opath(dir, manifest(dir, 3).segments[0].key);
      renameSync(a, `${a}.x`);
      renameSync(c, a);
      renameSync(`${a}.x`, c);
    },
  };
  for (const [name, damage] of Object.entries(damages)) {
    it(`refuses ${name} by name, copying only the intact RPs before it`, async () => {
      const { root, safe } = await threeRps();
      damage(safe.dir);
      const dest = join(root, 'copy', 'safe1');
      const r = await agent(['replicate', '--from', safe.dir, '--to', dest, '--json']);
      expect(r.code, r.stdout + r.stderr).toBe(8);
      expect(r.stdout + r.stderr).toMatch(/RP 2/);
      const copy = safeAt(join(root, 'copy'), 'safe1');
      const l = await copy.list();
      expect((jsonOut(l)!.recoveryPoints as { rp: number }[]).map((x) => x.rp)).toEqual([1]);
      const v = await copy.verify();
      expect(v.code, v.stdout).toBe(0);
    }, 60_000);
  }
});
