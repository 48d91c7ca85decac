/**
 * The index function as Lambda would run it (the deployed bundle with the stack's environment,
 * fed from the deployed queue by the local event-source-mapping runner), on uploads made the way
 * the agent makes them: a real safe is written by the backup code and its objects are PUT into the
 * stack's bucket, in the order each case needs. Bad uploads end in quarantine with a named reason,
 * and nothing is deleted from the bucket.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ListObjectVersionsCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoDbCatalog } from '#adapters/dynamodb-catalog.ts';
import { OUTPUTS } from '../../lib/offsite-stack.ts';
import { type Deployment, deployLocal } from '../../scripts/localcloud/deploy.ts';
import { type LocalFunctions, startLocalFunctions } from '../../scripts/localcloud/local-functions.ts';
import { useLocalCloud } from '../support/local-cloud.ts';
import { makeRpFixture, type RpFixture } from '../support/rp-fixture.ts';

const cloud = useLocalCloud();
let d: Deployment;

let fns: LocalFunctions;
let catalog: DynamoDbCatalog;
let bucket: string;
const fixtures = new Map<string, RpFixture>();

beforeAll(async () => {
  d = await deployLocal(cloud.profile, { outdir: cloud.outdir });
  fns = await startLocalFunctions(d);
  catalog = new DynamoDbCatalog(DynamoDBDocumentClient.from(cloud.clients.ddb), d.outputs[OUTPUTS.table]!);
  bucket = d.outputs[OUTPUTS.bucket]!;
});
afterAll(async () => {
  await fns?.close();
  for (const f of fixtures.values()) rmSync(f.root, { recursive: true, force: true });
});

async function fixture(safe: string): Promise<RpFixture> {
  const fx = await makeRpFixture(safe);
  fixtures.set(safe, fx);
  return fx;
}

function fileOf(fx: RpFixture, key: string): Buffer {
  return readFileSync(join(fx.root, 'safe', key.slice(`safes/${fx.safe}/`.length)));
}

async function put(key: string, body: Buffer | string): Promise<void> {
  await cloud.clients.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
}

/** Uploads the fixture's objects: everything but manifests, then the listed manifests in order. */
async function upload(
  fx: RpFixture,
  manifests: number[],
  edit: (key: string, body: Buffer) => Buffer | undefined = (_k, b) => b,
): Promise<void> {
  const isManifest = (k: string): boolean => k.includes('/rp/');
  for (const key of fx.keys.filter((k) => !isManifest(k))) {
    const body = edit(key, fileOf(fx, key));
    if (body) await put(key, body);
  }
  for (const rp of manifests) {
    const key = `safes/${fx.safe}/rp/${String(rp).padStart(10, '0')}.json`;
    const body = edit(key, fileOf(fx, key));
    if (body) await put(key, body);
  }
}

const manifestKey = (safe: string, rp: number): string =>
  `safes/${safe}/rp/${String(rp).padStart(10, '0')}.json`;
const editJson =
  // biome-ignore lint/suspicious/noExplicitAny: the test damages arbitrary manifest fields
    (target: string, change: (m: Record<string, any>) => void) =>
    (key: string, body: Buffer): Buffer => {
      if (key !== target) return body;
      const m = JSON.parse(body.toString('utf8'));
      change(m);
      return Buffer.from(JSON.stringify(m));
    };

/** Object versions and delete markers under a prefix (the bucket is versioned). */
async function versions(prefix: string): Promise<{ versions: number; deleteMarkers: number }> {
  const r = await cloud.clients.s3.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: prefix }));
  return { versions: (r.Versions ?? []).length, deleteMarkers: (r.DeleteMarkers ?? []).length };
}

describe('index function under the local runner', () => {
  it('commits a backup in the catalog; a duplicate event is harmless', async () => {
    const fx = await fixture('good');
    await upload(fx, [1, 2]);
    await fns.drain();
    const rps = await catalog.listRps('good');
    expect(rps.map((r) => [r.rp, r.state])).toEqual([
      [1, 'committed'],
      [2, 'committed'],
    ]);
    expect(await catalog.getSafe('good')).toMatchObject({ newestRp: 2, committedRps: 2, quarantined: 0 });
    const queueUrl = d.outputs[OUTPUTS.queueUrl]!;
    const dup = {
      source: 'aws.s3',
      'detail-type': 'Object Created',
      time: new Date().toISOString(),
      detail: { bucket: { name: bucket }, object: { key: manifestKey('good', 2), size: 1 } },
    };
    await cloud.clients.sqs.send(
      new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: JSON.stringify(dup) }),
    );
    const [batch] = await fns.drain();
    expect(batch).toMatchObject({ received: 1, deleted: 1 });
    expect(await catalog.getSafe('good')).toMatchObject({ committedRps: 2 });
    const at = await catalog.rpAtOrBefore('good', rps[1]!.createdAt!);
    expect(at?.rp).toBe(2);
  });

  it('holds a child whose parent is missing, then commits both when the parent arrives', async () => {
    const fx = await fixture('late-parent');
    await upload(fx, [2]);
    const first = await fns.drain();
    expect(first.reduce((a, b) => a + b.retried, 0)).toBe(1);
    expect(await catalog.getRp('late-parent', 2)).toMatchObject({ state: 'waiting' });
    await put(manifestKey('late-parent', 1), fileOf(fx, manifestKey('late-parent', 1)));
    await fns.drain(100, 5); // long-polls until the parent's event arrives
    expect((await catalog.listRps('late-parent')).map((r) => r.state)).toEqual(['committed', 'committed']);
  });

  const cases: [
    string,
    string,
    (fx: RpFixture) => (key: string, body: Buffer) => Buffer | undefined,
    RegExp,
  ][] = [
    [
      'missing segment',
      'missing-seg',
      (fx) => {
        const seg = JSON.parse(fileOf(fx, manifestKey(fx.safe, 1)).toString()).segments[0].key;
        return (k, b) => (k === seg ? undefined : b);
      },
      /segment .* is missing/,
    ],
    [
      'truncated segment',
      'short-seg',
      (fx) => {
        const seg = JSON.parse(fileOf(fx, manifestKey(fx.safe, 1)).toString()).segments[0].key;
        return (k, b) => (k === seg ? b.subarray(0, b.length - 100) : b);
      },
      /\(truncated\?\)/,
    ],
    [
      'checksum mismatch',
      'bad-sum',
      () => (k, b) =>
        k.endsWith('.map') ? Buffer.concat([b.subarray(0, -1), Buffer.from([b[b.length - 1]! ^ 1])]) : b,
      /checksum mismatch/,
    ],
    [
      'unknown format version',
      'future',
      (fx) => editJson(manifestKey(fx.safe, 1), (m) => (m.version = 9)),
      /format version 9/,
    ],
    [
      'oversized manifest',
      'huge',
      (fx) => (k, b) => (k === manifestKey(fx.safe, 1) ? Buffer.alloc(17 * 1024 * 1024, 0x20) : b),
      /oversized manifest/,
    ],
    [
      'manifest claiming another safe',
      'liar',
      (fx) => editJson(manifestKey(fx.safe, 1), (m) => (m.safe = 'good')),
      /claims safe "good"/,
    ],
    [
      "block map in another safe's prefix",
      'borrower',
      (fx) =>
        editJson(
          manifestKey(fx.safe, 1),
          (m) => (m.devices[0].blockMap.key = 'safes/good/map/0000000001/d.map'),
        ),
      /block map key "safes\/good\/map/,
    ],
  ];

  it.each(cases)('quarantines a %s with the reason, deleting nothing', async (_name, safe, edit, reason) => {
    const fx = await fixture(safe);
    await upload(fx, [1], edit(fx));
    const before = await versions(`safes/${safe}/`);
    await fns.drain();
    const q = await catalog.listQuarantined(safe);
    expect(q.map((x) => x.key)).toEqual([manifestKey(safe, 1)]);
    expect(q[0]!.reason).toMatch(reason);
    expect(await catalog.getRp(safe, 1)).toMatchObject({ state: 'quarantined' });
    expect(await versions(`safes/${safe}/`)).toEqual(before);
    expect(before.deleteMarkers).toBe(0);
  });

  it('quarantines hostile keys (path traversal, malformed) by name', async () => {
    await put('safes/good/../evil/rp/0000000001.json', '{}');
    await put('safes/good/rp/7.json', '{}');
    await fns.drain();
    const q = (await catalog.listQuarantined()).map((x) => x.key);
    expect(q).toEqual(
      expect.arrayContaining(['safes/good/../evil/rp/0000000001.json', 'safes/good/rp/7.json']),
    );
  });

  it('reports a malformed message as a batch item failure, leaving it on the queue for redrive', async () => {
    const queueUrl = d.outputs[OUTPUTS.queueUrl]!;
    await cloud.clients.sqs.send(
      new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: '{"not":"an event"}' }),
    );
    await put('safes/good/safe.json', fileOf(fixtures.get('good')!, 'safes/good/safe.json'));
    const [batch] = await fns.drain(100, 5); // long-polls until the messages arrive
    expect(batch).toMatchObject({ received: 2, deleted: 1, retried: 1 });
  });
});
