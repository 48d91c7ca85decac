/**
 * The real agent killed with SIGKILL early, mid-way and late in a backup: no partial RP ever
 * becomes visible, and the next run resumes, referencing the segments already durable instead of
 * uploading them again.
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FsObjectStore } from '#adapters/fs-store.ts';
import { safePrefix } from '#core/keys.ts';
import { SafeReader } from '#core/safe-reader.ts';
import { agent, startAgent } from '../support/agent-cli.ts';
import { readImage, sha256 } from '../support/read-image.ts';

const MiB = 1024 * 1024;

describe('cdp-agent backup killed with SIGKILL', () => {
  it('shows no partial RP and resumes without re-uploading durable segments', async () => {
    const root = mkdtempSync(join(tmpdir(), 'kill-'));
    const seed = Number(process.env.KILL_SEED ?? randomBytes(4).readUInt32LE(0));
    console.log(`agent-kill: KILL_SEED=${seed}`);
    const data = createCipheriv(
      'aes-256-ctr',
      createHash('sha256').update(String(seed)).digest(),
      Buffer.alloc(16),
    );
    const img = Buffer.concat([data.update(Buffer.alloc(40 * MiB)), Buffer.alloc(8 * MiB)]);
    const dev = join(root, 'disk.img');
    writeFileSync(dev, img);
    const safeDir = join(root, 'safes', 'killed');
    const args = [
      'backup',
      '--safe',
      safeDir,
      '--device',
      dev,
      '--state-dir',
      join(root, 'state'),
      '--segment-size',
      '2M',
      '--bwlimit',
      '16M',
      '--json',
    ];
    const store = new FsObjectStore(safeDir, 'killed');
    const segBytes = async () =>
      (await store.list(`${safePrefix('killed')}seg/`)).reduce((a, o) => a + o.size, 0);
    mkdirSync(safeDir, { recursive: true });
    /** Resolves once the safe's segments hold `bytes` (woken by the file system's events) or the run ended. */
    const durableReaches = (bytes: number, ended: Promise<unknown>) =>
      new Promise<void>((resolve) => {
        const watcher = watch(safeDir, { recursive: true }, () => void check());
        const done = () => {
          watcher.close();
          resolve();
        };
        const check = async () => {
          if ((await segBytes()) >= bytes) done();
        };
        void ended.then(done);
        void check();
      });
    let kills = 0;
    let durable = 0;
    let done: Awaited<ReturnType<typeof agent>> | undefined;
    // killed once 1, then 4, then 8 more segments are durable: early, mid-way and late in the run,
    // whatever the machine's speed (the store is watched, not the clock)
    for (const more of [1, 4, 8]) {
      durable = await segBytes();
      const run = startAgent(args);
      await durableReaches(durable + more * 2 * MiB, run.done);
      run.child.kill('SIGKILL');
      const r = await run.done;
      if (r.signal !== 'SIGKILL') {
        // it finished first: resuming left it little to upload. It is the finishing run.
        done = r;
        break;
      }
      kills++;
      expect(await new SafeReader(store, 'killed').listRps()).toEqual([]);
    }
    expect(kills).toBeGreaterThan(0);
    if (!done) {
      durable = await segBytes();
      done = await agent(args);
    }
    expect(done.code, done.stderr).toBe(0);
    const out = JSON.parse(done.stdout);
    expect(out.rp).toBe(1);
    // the finishing run stored only what was not durable yet: one copy of the data in all
    expect(out.stats.storedBytes).toBeLessThanOrEqual(40 * MiB + 64 * 1024 - durable + 2 * MiB);
    expect(await segBytes()).toBeLessThan(40 * MiB + 3 * MiB);
    expect(sha256(await readImage(new SafeReader(store, 'killed'), 1, 'disk.img'))).toBe(sha256(img));
    rmSync(root, { recursive: true, force: true });
  });
});
