/**
 * The real agent backs up into the deployed stack's bucket in moto: the full and the incremental
 * read back exactly through S3, and the index function commits both RPs in the catalog.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoDbCatalog } from '#adapters/dynamodb-catalog.ts';
import { S3ObjectStore } from '#adapters/s3-store.ts';
import { SafeReader } from '#core/safe-reader.ts';
import { OUTPUTS } from '../../lib/offsite-stack.ts';
import { cloudEnv } from '../../scripts/localcloud/clients.ts';
import { type Deployment, deployLocal } from '../../scripts/localcloud/deploy.ts';
import { type LocalFunctions, startLocalFunctions } from '../../scripts/localcloud/local-functions.ts';
import { agent } from '../support/agent-cli.ts';
import { useLocalCloud } from '../support/local-cloud.ts';
import { readImage, sha256 } from '../support/read-image.ts';

const cloud = useLocalCloud();
const MiB = 1024 * 1024;
let d: Deployment;
let fns: LocalFunctions;
let root: string;

beforeAll(async () => {
  d = await deployLocal(cloud.profile, { outdir: cloud.outdir });
  fns = await startLocalFunctions(d);
  root = mkdtempSync(join(tmpdir(), 'agent-s3-'));
});
afterAll(async () => fns?.close());

describe('cdp-agent backup to S3', () => {
  it('commits a full and an incremental that read back exactly, and the index function commits them', async () => {
    const bucket = d.outputs[OUTPUTS.bucket]!;
    const dev = join(root, 'vol.img');
    const img = Buffer.concat([
      randomBytes(6 * MiB),
      Buffer.alloc(4 * MiB),
      Buffer.alloc(2 * MiB, 'log line\n'),
    ]);
    writeFileSync(dev, img);
    const safe = `s3://${bucket}/safes/host1`;
    const env = cloudEnv(cloud.profile);
    const args = [
      'backup',
      '--safe',
      safe,
      '--device',
      dev,
      '--state-dir',
      join(root, 'state'),
      '--segment-size',
      '4M',
      '--json',
    ];
    const full = await agent(args, env);
    expect(full.code, full.stderr).toBe(0);
    expect(JSON.parse(full.stdout)).toMatchObject({ rp: 1, parent: null });

    const changed = readFileSync(dev);
    randomBytes(300 * 1024).copy(changed, 3 * MiB);
    writeFileSync(dev, changed);
    const incr = await agent(args, env);
    expect(incr.code, incr.stderr).toBe(0);
    const incrOut = JSON.parse(incr.stdout);
    expect(incrOut).toMatchObject({ rp: 2, parent: 1 });
    expect(incrOut.stats.storedBytes).toBeLessThan(600 * 1024);

    const list = await agent(['list', '--safe', safe, '--json'], env);
    const listed = JSON.parse(list.stdout).recoveryPoints;
    expect(listed.map((r: { rp: number; kind: string }) => [r.rp, r.kind])).toEqual([
      [1, 'full'],
      [2, 'incremental'],
    ]);
    expect(listed[1].devices[0].id).toBe('vol.img');

    const reader = new SafeReader(
      new S3ObjectStore(cloud.clients.s3, bucket, 'safes/host1', 'host1'),
      'host1',
    );
    expect(sha256(await readImage(reader, 1, 'vol.img'))).toBe(sha256(img));
    expect(sha256(await readImage(reader, 2, 'vol.img'))).toBe(sha256(changed));

    await fns.drain();
    const catalog = new DynamoDbCatalog(
      DynamoDBDocumentClient.from(cloud.clients.ddb),
      d.outputs[OUTPUTS.table]!,
    );
    expect((await catalog.listRps('host1')).map((r) => [r.rp, r.state, r.parent])).toEqual([
      [1, 'committed', null],
      [2, 'committed', 1],
    ]);
    expect(await catalog.listQuarantined()).toEqual([]);

    // The agent asks the offsite catalog through the query function (Lambda Invoke API).
    const invoke = await fns.serveInvoke();
    const remote = await agent(
      ['list', '--safe', safe, '--remote', d.outputs[OUTPUTS.queryFunction]!, '--json'],
      { ...env, AWS_ENDPOINT_URL_LAMBDA: invoke.endpoint },
    );
    expect(remote.code, remote.stderr).toBe(0);
    const remoteOut = JSON.parse(remote.stdout);
    expect(remoteOut.recoveryPoints.map((r: { rp: number; state: string }) => [r.rp, r.state])).toEqual([
      [1, 'committed'],
      [2, 'committed'],
    ]);
    expect(remoteOut.lag).toMatchObject({ safe: 'host1', newestRp: 2, breached: false });
    const wrong = await agent(['list', '--safe', safe, '--remote', 'no-such-function'], {
      ...env,
      AWS_ENDPOINT_URL_LAMBDA: invoke.endpoint,
    });
    expect(wrong.code).toBe(7);
    expect(wrong.stderr).toMatch(/query function no-such-function: .*Function not found/);
  });

  it('fails with a clear error and exit code when the bucket does not exist', async () => {
    const dev = join(root, 'small.img');
    writeFileSync(dev, randomBytes(64 * 1024));
    const r = await agent(
      [
        'backup',
        '--safe',
        's3://no-such-bucket/safes/x',
        '--device',
        dev,
        '--state-dir',
        join(root, 'state2'),
      ],
      cloudEnv(cloud.profile),
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/NoSuchBucket|does not exist/);
  });
});
