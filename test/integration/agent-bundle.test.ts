/** The agent as shipped (the esbuild bundle in dist/agent) backs up and lists like the sources. */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildAgent } from '../../scripts/build-agent.ts';

describe('bundled cdp-agent', () => {
  it('builds, backs up with its scan workers, and lists', async () => {
    const root = mkdtempSync(join(tmpdir(), 'bundle-'));
    const bin = await buildAgent(join(root, 'dist'));
    const dev = join(root, 'd.img');
    writeFileSync(dev, Buffer.concat([randomBytes(3 << 20), Buffer.alloc(1 << 20)]));
    const safe = join(root, 'safes', 'bundled');
    const run = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
    const b = run('backup', '--safe', safe, '--device', dev, '--state-dir', join(root, 'state'), '--json');
    expect(b.status, b.stderr).toBe(0);
    expect(JSON.parse(b.stdout)).toMatchObject({ rp: 1, stats: { scannedBytes: 4 << 20 } });
    const l = run('list', '--safe', safe, '--json');
    expect(JSON.parse(l.stdout).recoveryPoints).toHaveLength(1);
    rmSync(root, { recursive: true, force: true });
  });
});
