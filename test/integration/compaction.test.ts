/**
 * Offsite compaction through the deployed stack: the real agent backs up (encrypted) into the
 * bucket, the index function commits the RPs, `cdp-agent policy` sets retention in the safe, and
 * the compaction function (queue task, fanned out over rewrite tasks, then finish) merges the
 * expired RPs, records the generation in the catalog, and every retained RP still restores byte
 * for byte through the restore function; an expired RP is refused by name.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetFunctionConfigurationCommand, UpdateFunctionConfigurationCommand } from '@aws-sdk/client-lambda';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoDbCatalog } from '#adapters/dynamodb-catalog.ts';
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
const SAFE = 'cmp';
let d: Deployment;
let fns: LocalFunctions;
let invoke: InvokeServer;
let root: string;
let env: Record<string, string>;
let safe: string;
let keyFile: string;
let catalog: DynamoDbCatalog;
const images: Buffer[] = [];

beforeAll(async () => {
  d = await deployLocal(cloud.profile, { outdir: cloud.outdir });
  // small output segments, shards of 16 blocks (1 MiB) and nothing in place, so even this small
  // safe fans out at every stage
  const fn = d.outputs[OUTPUTS.compactionFunction]!;
  const cfg = await cloud.clients.lambda.send(new GetFunctionConfigurationCommand({ FunctionName: fn }));
  await cloud.clients.lambda.send(
    new UpdateFunctionConfigurationCommand({
      FunctionName: fn,
      Environment: {
        Variables: {
          ...cfg.Environment?.Variables,
          SEGMENT_BYTES: String(256 * 1024),
          SHARD_BLOCKS: '16',
          INLINE_UNITS: '0',
        },
      },
    }),
  );
  fns = await startLocalFunctions(d);
  catalog = new DynamoDbCatalog(DynamoDBDocumentClient.from(cloud.clients.ddb), d.outputs[OUTPUTS.table]!);
  invoke = await fns.serveInvoke();
  root = mkdtempSync(join(tmpdir(), 'compaction-it-'));
  env = { ...cloudEnv(cloud.profile), AWS_ENDPOINT_URL_LAMBDA: invoke.endpoint };
  safe = `s3://${d.outputs[OUTPUTS.bucket]}/safes/${SAFE}`;
  keyFile = join(root, 'key');
  writeFileSync(keyFile, randomBytes(32).toString('hex'));
  const dev = join(root, 'vol.img');
  const img = Buffer.concat([randomBytes(3 * MiB), Buffer.alloc(MiB)]);
  for (let i = 0; i < 5; i++) {
    // each RP rewrites the same 1.5 MiB region, so the older copies die and their segments thin out
    if (i > 0) randomBytes(1.5 * MiB).copy(img, 256 * 1024);
    writeFileSync(dev, img);
    const r = await agent(
      [
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
      ],
      env,
    );
    expect(r.code, r.stderr).toBe(0);
    images.push(Buffer.from(img));
  }
  await fns.drain();
});
afterAll(async () => {
  await fns?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

const restore = (rp: string, to: string) =>
  agent(
    remoteRestoreArgs({ safe, device: 'vol.img', fn: d.outputs[OUTPUTS.restoreFunction]!, keyFile }, rp, to),
    env,
  );

describe('compaction function', () => {
  it('queues one compact task per safe on its schedule', async () => {
    const r = (await fns.invoke(d.outputs[OUTPUTS.compactionFunction]!, {
      'detail-type': 'Scheduled Event',
      source: 'aws.events',
      detail: {},
    })) as { safes: number };
    expect(r.safes).toBeGreaterThanOrEqual(1);
    await fns.drain(); // the default policy keeps these five RPs: nothing expires
    expect((await catalog.listRps(SAFE)).map((x) => x.state)).toEqual(Array(5).fill('committed'));
  });

  it('merges expired RPs over fanned-out tasks, and every retained RP restores byte for byte', async () => {
    const p = await agent(['policy', '--safe', safe, '--last', '2', '--lock', '2', '--json'], env);
    expect(p.code, p.stderr).toBe(0);
    expect(JSON.parse(p.stdout).expire).toEqual([1, 3]);
    await cloud.clients.sqs.send(
      new SendMessageCommand({
        QueueUrl: d.outputs[OUTPUTS.compactionQueueUrl]!,
        MessageBody: JSON.stringify({ action: 'compact', safe: SAFE }),
      }),
    );
    const batches = await fns.drain();
    expect(batches.filter((b) => b.error || b.retried > 0)).toEqual([]);
    expect(await catalog.getSafe(SAFE)).toMatchObject({ generation: 1, compactedUpTo: 5, committedRps: 3 });
    expect((await catalog.getRp(SAFE, 1))?.state).toBe('expired');
    expect((await catalog.getRp(SAFE, 3))?.state).toBe('expired');
    const objs = await cloud.clients.s3.send(
      new ListObjectsV2Command({ Bucket: d.outputs[OUTPUTS.bucket]!, Prefix: `safes/${SAFE}/gen/` }),
    );
    expect(objs.Contents?.map((o) => o.Key)).toContain(`safes/${SAFE}/gen/0000000001.json`);
    const gen = JSON.parse(
      await (
        await cloud.clients.s3.send(
          new GetObjectCommand({
            Bucket: d.outputs[OUTPUTS.bucket]!,
            Key: `safes/${SAFE}/gen/0000000001.json`,
          }),
        )
      ).Body!.transformToString(),
    );
    expect(gen.stats.segmentsRewritten).toBeGreaterThan(0);
    expect(gen.written.length).toBeGreaterThan(1); // several output segments: fanned out
    // 4 MiB at 64 KiB blocks in shards of 16: every rebuilt map is four block-range parts
    const rebuilt = gen.rps
      .flatMap((r: { devices: { parts?: unknown[] }[] }) => r.devices)
      .filter((x: { parts?: unknown[] }) => x.parts);
    expect(rebuilt.length).toBeGreaterThan(0);
    for (const x of rebuilt) expect(x.parts).toHaveLength(4);
    // what compaction writes under safes/ reaches the index function too: ignored, never quarantined
    expect(await catalog.listQuarantined(SAFE)).toEqual([]);
    const listed = await agent(['list', '--safe', safe, '--json'], env);
    expect(listed.code, listed.stderr).toBe(0);
    const listing = JSON.parse(listed.stdout);
    expect(listing.generation).toMatchObject({ generation: 1, upTo: 5 });
    expect(listing.recoveryPoints.map((r: { rp: number }) => r.rp)).toEqual([2, 4, 5]);
    for (const r of listing.recoveryPoints) expect(r.chain).toBeLessThanOrEqual(8); // one full + at most 7 deltas
    for (const rp of [2, 4, 5]) {
      const to = join(root, `r${rp}.img`);
      const r = await restore(String(rp), to);
      expect(r.code, r.stderr).toBe(0);
      expect(sha256(readFileSync(to)), `RP ${rp}`).toBe(sha256(images[rp - 1]!));
    }
    const gone = await restore('3', join(root, 'r3.img'));
    expect(gone.code).toBe(7);
    expect(gone.stderr).toMatch(/recovery point 3 .*expired/);
  });

  it('takes the same lock as `cdp-agent compact`: the two never compact a safe at once', async () => {
    const p = await agent(['policy', '--safe', safe, '--last', '1', '--json'], env);
    expect(p.code, p.stderr).toBe(0);
    await cloud.clients.sqs.send(
      new SendMessageCommand({
        QueueUrl: d.outputs[OUTPUTS.compactionQueueUrl]!,
        MessageBody: JSON.stringify({ action: 'compact', safe: SAFE }),
      }),
    );
    // only the compact task: it takes the lock and fans out, leaving its job's tasks queued
    const poller = fns.pollers.find((x) => x.mapping.queueUrl === d.outputs[OUTPUTS.compactionQueueUrl])!;
    const first = await poller.pollOnce(0);
    expect(first).toMatchObject({ received: 1, deleted: 1 });
    const busy = await agent(['compact', '--safe', safe, '--grace', '0s', '--json'], env);
    expect(busy.code, busy.stderr).toBe(5);
    expect(busy.stderr).toMatch(/locked: compact by compaction function/);
    const batches = await fns.drain();
    expect(batches.filter((b) => b.error || b.retried > 0)).toEqual([]);
    expect(await catalog.getSafe(SAFE)).toMatchObject({ generation: 2 });
    // the job released the lock: the agent compacts now (nothing left to merge)
    const after = await agent(['compact', '--safe', safe, '--json'], env);
    expect(after.code, after.stderr).toBe(0);
    const to = join(root, 'latest.img');
    const r = await restore('latest', to);
    expect(r.code, r.stderr).toBe(0);
    expect(sha256(readFileSync(to))).toBe(sha256(images[4]!));
  });
});
