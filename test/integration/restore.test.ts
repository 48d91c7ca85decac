/**
 * Restore straight from offsite: the real agent backs up (encrypted) into the deployed stack's
 * bucket, the index function commits the RPs, and `cdp-agent restore --remote` restores any RP
 * through the restore function's plan and presigned URLs (no bucket credentials needed for the
 * data), byte for byte, as a delta too; a corrupt block is named, never written silently.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OUTPUTS } from '../../lib/offsite-stack.ts';
import { cloudEnv } from '../../scripts/localcloud/clients.ts';
import { type Deployment, deployLocal } from '../../scripts/localcloud/deploy.ts';
import type { InvokeServer } from '../../scripts/localcloud/invoke-server.ts';
import { type LocalFunctions, startLocalFunctions } from '../../scripts/localcloud/local-functions.ts';
import { agent, remoteRestoreArgs } from '../support/agent-cli.ts';
import { useLocalCloud } from '../support/local-cloud.ts';
import { sha256 } from '../support/read-image.ts';

const cloud = useLocalCloud();
const MiB = 1024 * 1024;
let d: Deployment;
let fns: LocalFunctions;
let invoke: InvokeServer;
let root: string;
let env: Record<string, string>;
let safe: string;
let keyFile: string;
const images: Buffer[] = [];
const times: string[] = [];

beforeAll(async () => {
  d = await deployLocal(cloud.profile, { outdir: cloud.outdir });
  fns = await startLocalFunctions(d);
  invoke = await fns.serveInvoke();
  root = mkdtempSync(join(tmpdir(), 'restore-it-'));
  env = { ...cloudEnv(cloud.profile), AWS_ENDPOINT_URL_LAMBDA: invoke.endpoint };
  safe = `s3://${d.outputs[OUTPUTS.bucket]}/safes/rs`;
  keyFile = join(root, 'key');
  writeFileSync(keyFile, randomBytes(32).toString('hex'));
  const dev = join(root, 'vol.img');
  const img = Buffer.concat([randomBytes(3 * MiB), Buffer.alloc(2 * MiB), Buffer.alloc(MiB, 'log line\n')]);
  writeFileSync(dev, img);
  const backup = [
    'backup',
    '--safe',
    safe,
    '--device',
    dev,
    '--state-dir',
    join(root, 'state'),
    '--encrypt-key-file',
    keyFile,
    '--segment-size',
    '1M',
    '--json',
  ];
  for (let i = 0; i < 2; i++) {
    const r = await agent(backup, env);
    expect(r.code, r.stderr).toBe(0);
    images.push(readFileSync(dev));
    times.push(new Date().toISOString()); // after RP i+1, before the next one
    randomBytes(200 * 1024).copy(img, 1 * MiB + 4096);
    writeFileSync(dev, img);
    await new Promise((r) => setTimeout(r, 20));
  }
  await fns.drain();
});
afterAll(async () => {
  await fns?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

const restoreArgs = (rp: string, to: string, ...more: string[]) =>
  remoteRestoreArgs(
    { safe, device: 'vol.img', fn: d.outputs[OUTPUTS.restoreFunction]!, keyFile },
    rp,
    to,
    ...more,
  );

describe('cdp-agent restore --remote (restore function)', () => {
  it('restores each RP byte for byte, by number, time and latest', async () => {
    for (const [sel, want] of [
      ['1', 0],
      ['2', 1],
      [times[0]!, 0],
      ['latest', 1],
    ] as const) {
      const to = join(root, `r-${sel.replace(/[:.]/g, '_')}.img`);
      const r = await agent(restoreArgs(sel, to), env);
      expect(r.code, r.stderr).toBe(0);
      expect(sha256(readFileSync(to)), `--rp ${sel}`).toBe(sha256(images[want]!));
      expect(JSON.parse(r.stdout)).toMatchObject({ delta: false, rp: want + 1 });
    }
  });

  it('delta-restores an older copy fetching little more than the changed blocks', async () => {
    const to = join(root, 'delta.img');
    expect((await agent(restoreArgs('1', to), env)).code).toBe(0);
    const r = await agent(restoreArgs('2', to), env);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.delta).toBe(true);
    expect(sha256(readFileSync(to))).toBe(sha256(images[1]!));
    // 200 KiB rewritten touches 4-5 blocks of 64 KiB; footers add a little
    expect(out.fetchedBytes).toBeLessThan(600 * 1024);
  });

  it('refuses an RP that is not committed, naming it', async () => {
    const r = await agent(restoreArgs('9', join(root, 'nine.img')), env);
    expect(r.code).toBe(7);
    expect(r.stderr).toMatch(/committed recovery point 9 of safe rs not found/);
  });

  it('names a corrupt block and writes nothing silently; --allow-damaged reports it', async () => {
    const bucket = d.outputs[OUTPUTS.bucket]!;
    const list = await agent(['list', '--safe', safe, '--json'], env);
    expect(list.code).toBe(0);
    const manifest = await cloud.clients.s3.send(
      new GetObjectCommand({ Bucket: bucket, Key: 'safes/rs/rp/0000000001.json' }),
    );
    const seg = JSON.parse(await manifest.Body!.transformToString()).segments[0].key as string;
    const obj = await cloud.clients.s3.send(new GetObjectCommand({ Bucket: bucket, Key: seg }));
    const bytes = Buffer.from(await obj.Body!.transformToByteArray());
    bytes[100]! ^= 0x40; // inside the first frame
    await cloud.clients.s3.send(new PutObjectCommand({ Bucket: bucket, Key: seg, Body: bytes }));
    const segId = seg.split('/').pop()!.replace('.seg', '');

    const r = await agent(restoreArgs('1', join(root, 'bad.img')), env);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(new RegExp(`block \\d+ of device vol.img at RP 1 \\(segment ${segId}\\)`));

    const r2 = await agent(restoreArgs('1', join(root, 'bad2.img'), '--allow-damaged'), env);
    expect(r2.code).toBe(8);
    expect(JSON.parse(r2.stdout).damaged[0]).toMatchObject({ segment: segId });

    const v = await agent(
      ['verify', '--safe', safe, '--rp', '1', '--encrypt-key-file', keyFile, '--json'],
      env,
    );
    expect(v.code).toBe(8);
    expect(JSON.parse(v.stdout).results[0].damaged[0]).toMatchObject({ segment: segId });
  });

  it('exports an RP as a raw image object, parts built in parallel by the export function', async () => {
    const bucket = d.outputs[OUTPUTS.bucket]!;
    const dev = join(root, 'plain.img');
    const img = Buffer.concat([
      randomBytes(5 * MiB),
      Buffer.alloc(4 * MiB),
      Buffer.alloc(3 * MiB + 4321, 'text '),
    ]);
    writeFileSync(dev, img);
    const plainSafe = `s3://${bucket}/safes/plain`;
    const b = await agent(
      ['backup', '--safe', plainSafe, '--device', dev, '--state-dir', join(root, 'state-plain')],
      env,
    );
    expect(b.code, b.stderr).toBe(0);
    await fns.drain();
    const fn = d.outputs[OUTPUTS.restoreFunction]!;
    const started = (await fns.invoke(fn, {
      action: 'export',
      safe: 'plain',
      device: 'plain.img',
      rp: 'latest',
      partBytes: 5 * MiB,
    })) as { exportId: string; key: string; parts: number; state: string };
    expect(started).toMatchObject({ parts: 3, state: 'running' });
    await fns.drain();
    const status = (await fns.invoke(fn, {
      action: 'export-status',
      safe: 'plain',
      exportId: started.exportId,
    })) as {
      state: string;
    };
    expect(status.state).toBe('complete');
    const obj = await cloud.clients.s3.send(new GetObjectCommand({ Bucket: bucket, Key: started.key }));
    const exported = Buffer.from(await obj.Body!.transformToByteArray());
    expect(exported.length).toBe(img.length);
    expect(sha256(exported)).toBe(sha256(img));
  });

  it('refuses to export an encrypted safe, whose key never leaves the agent', async () => {
    await expect(
      fns.invoke(d.outputs[OUTPUTS.restoreFunction]!, {
        action: 'export',
        safe: 'rs',
        device: 'vol.img',
        rp: 1,
      }),
    ).rejects.toThrow(/safe rs is encrypted: an export needs its data key, which never leaves the agent/);
  });
});
