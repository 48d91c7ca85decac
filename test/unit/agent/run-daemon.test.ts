/**
 * `cdp-agent run` as a user runs it: takes an RP every interval into the primary safe, replicates
 * to a second (onsite) copy without making capture wait, keeps a status file, stops gracefully on
 * SIGTERM; `cdp-agent status` reports both points; every replicated RP restores exactly.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FsObjectStore } from '#adapters/fs-store.ts';
import { SafeReader } from '#core/safe-reader.ts';
import { agent, startAgent } from '../../support/agent-cli.ts';

const root = mkdtempSync(join(tmpdir(), 'run-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('cdp-agent run and status', () => {
  it('captures every interval, replicates, reports status, stops on SIGTERM', async () => {
    const dev = join(root, 'vol.img');
    writeFileSync(dev, randomBytes(256 * 1024));
    const config = join(root, 'agent.json');
    const statusFile = join(root, 'status.json');
    writeFileSync(
      config,
      JSON.stringify({
        interval: '400ms',
        stateDir: join(root, 'state'),
        statusFile,
        safes: [
          {
            safe: join(root, 'primary', 'db1'),
            devices: [dev],
            blockSize: '4k',
            replicateTo: [join(root, 'nas', 'db1')],
          },
        ],
      }),
    );
    const { child, done } = startAgent(['run', '--config', config]);
    const deadline = Date.now() + 30_000;
    // keep writing while it runs, until the copy holds three RPs
    while (Date.now() < deadline) {
      const img = readFileSync(dev);
      randomBytes(4096).copy(img, Math.floor(Math.random() * 60) * 4096);
      writeFileSync(dev, img);
      await new Promise((r) => setTimeout(r, 150));
      const rps = await new SafeReader(new FsObjectStore(join(root, 'nas', 'db1'), 'db1'), 'db1')
        .listRps()
        .catch(() => []);
      if (rps.length >= 3) break;
    }
    child.kill('SIGTERM');
    const r = await done;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/SIGTERM: finishing the step in progress/);
    const status = JSON.parse(readFileSync(statusFile, 'utf8'));
    expect(status.safes[0]).toMatchObject({ lastBackupOk: true });
    expect(status.safes[0].destinations[join(root, 'nas', 'db1')].lastError).toBeUndefined();
    expect(existsSync(`${statusFile}.tmp-${child.pid}`)).toBe(false);

    // a final replicate catches up; the copy then holds every RP of the primary, each restorable
    const rep = await agent([
      'replicate',
      '--from',
      join(root, 'primary', 'db1'),
      '--to',
      join(root, 'nas', 'db1'),
    ]);
    expect(rep.code, rep.stderr).toBe(0);
    const primary = new SafeReader(new FsObjectStore(join(root, 'primary', 'db1'), 'db1'), 'db1');
    const copy = new SafeReader(new FsObjectStore(join(root, 'nas', 'db1'), 'db1'), 'db1');
    const rps = await primary.listRps();
    expect(rps.length).toBeGreaterThanOrEqual(3);
    expect(await copy.listRps()).toEqual(rps);
    for (const rp of rps)
      expect((await copy.readImage(rp, 'vol.img')).equals(await primary.readImage(rp, 'vol.img'))).toBe(true);

    const st = await agent(['status', '--config', config, '--json']);
    expect(st.code, st.stderr).toBe(0);
    const s = JSON.parse(st.stdout).safes[0];
    expect(s.primary.newestRp).toBe(rps.at(-1));
    expect(s.destinations[0]).toMatchObject({ newestRp: rps.at(-1), pendingRps: 0, pendingBytes: 0 });
  }, 60_000);
});
