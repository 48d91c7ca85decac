/**
 * The ingest function as Lambda would run it: the deployed bundle, with the environment the stack
 * gave it, fed by the local event-source-mapping runner from the deployed queue.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoDbUploadLog } from '#adapters/dynamodb-upload-log.ts';
import { OUTPUTS } from '../../lib/offsite-stack.ts';
import { type Deployment, deployLocal } from '../../scripts/localcloud/deploy.ts';
import { type LocalFunctions, startLocalFunctions } from '../../scripts/localcloud/local-functions.ts';
import { useLocalCloud } from '../support/local-cloud.ts';

const cloud = useLocalCloud();
let d: Deployment;
let fns: LocalFunctions;
let log: DynamoDbUploadLog;

beforeAll(async () => {
  d = await deployLocal(cloud.profile, { outdir: cloud.outdir });
  fns = await startLocalFunctions(d);
  log = new DynamoDbUploadLog(DynamoDBDocumentClient.from(cloud.clients.ddb), d.outputs[OUTPUTS.table]!);
});
afterAll(async () => fns?.close());

describe('ingest function under the local runner', () => {
  it('records objects of the layout and quarantines the rest, deleting nothing', async () => {
    const bucket = d.outputs[OUTPUTS.bucket]!;
    for (const key of ['safes/s1/safe.json', 'safes/s1/rp/0000000001.json', 'safes/s1/../s2/safe.json']) {
      await cloud.clients.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: 'x' }));
    }
    const batches = await fns.drain();
    expect(batches.reduce((a, b) => a + b.deleted, 0)).toBe(3);
    expect((await log.listObjects('s1')).map((o) => o.kind)).toEqual(['manifest', 'safe-config']);
    const q = await log.listQuarantined();
    expect(q.map((x) => x.key)).toEqual(['safes/s1/../s2/safe.json']);
  });

  it('reports a malformed message as a batch item failure, leaving it on the queue for redrive', async () => {
    const queueUrl = d.outputs[OUTPUTS.queueUrl]!;
    await cloud.clients.sqs.send(
      new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: '{"not":"an event"}' }),
    );
    const bucket = d.outputs[OUTPUTS.bucket]!;
    await cloud.clients.s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: 'safes/s3/safe.json', Body: 'x' }),
    );
    await new Promise((r) => setTimeout(r, 500));
    const [batch] = await fns.drain();
    expect(batch).toMatchObject({ received: 2, deleted: 1, retried: 1 });
    expect(await log.listObjects('s3')).toHaveLength(1);
  });
});
