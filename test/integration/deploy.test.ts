/**
 * The synthesized CDK template deployed into the embedded moto server: every property moto drops
 * is put back, and an object written under the safes prefix arrives on the ingest queue as an S3
 * Object Created event through the deployed EventBridge rule.
 */

import { GetFunctionUrlConfigCommand, ListEventSourceMappingsCommand } from '@aws-sdk/client-lambda';
import { GetBucketVersioningCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { type Message, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { beforeAll, describe, expect, it } from 'vitest';
import { OUTPUTS } from '../../lib/offsite-stack.ts';
import { type Deployment, deployLocal } from '../../scripts/localcloud/deploy.ts';
import { DROPPED_PROPERTIES } from '../../scripts/localcloud/reapply.ts';
import { useLocalCloud } from '../support/local-cloud.ts';

const cloud = useLocalCloud();
let d: Deployment;

beforeAll(async () => {
  d = await deployLocal(cloud.profile, { outdir: cloud.outdir });
});

async function receiveAll(queueUrl: string, waitSeconds = 2): Promise<Message[]> {
  const out: Message[] = [];
  for (;;) {
    const r = await cloud.clients.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        WaitTimeSeconds: waitSeconds,
        MaxNumberOfMessages: 10,
      }),
    );
    if (!r.Messages?.length) return out;
    out.push(...r.Messages);
    waitSeconds = 1;
  }
}

describe('local deploy of the synthesized template', () => {
  it('exposes every stack output', () => {
    for (const name of Object.values(OUTPUTS)) expect(d.outputs[name], name).toBeTruthy();
    expect(d.outputs[OUTPUTS.bucket]).toMatch(/^cdpoffsite-safesbucket/);
  });

  it('leaves no dropped property missing, and every row of the table matches a resource', () => {
    expect(d.reapplied.filter((r) => r.status === 'still-missing')).toEqual([]);
    for (const row of DROPPED_PROPERTIES) {
      const hits = d.reapplied.filter(
        (r) => r.resourceType === row.resourceType && r.property === row.property,
      );
      expect(hits.length, `${row.resourceType} ${row.property}`).toBeGreaterThan(0);
    }
    const s3 = cloud.clients.s3;
    return expect(
      s3.send(new GetBucketVersioningCommand({ Bucket: d.outputs[OUTPUTS.bucket] })),
    ).resolves.toMatchObject({ Status: 'Enabled' });
  });

  it('takes the event source mappings away from moto and hands them to the local runner', async () => {
    const r = await cloud.clients.lambda.send(new ListEventSourceMappingsCommand({}));
    expect(r.EventSourceMappings ?? []).toEqual([]);
    expect(d.mappings).toHaveLength(3);
    const ingest = d.mappings.find((m) => m.queueUrl === d.outputs[OUTPUTS.queueUrl]);
    expect(ingest).toMatchObject({ batchSize: 10, reportBatchItemFailures: true });
    const exports = d.mappings.find((m) => m.queueUrl === d.outputs[OUTPUTS.exportQueueUrl]);
    expect(exports).toMatchObject({ batchSize: 1, reportBatchItemFailures: true });
    const compaction = d.mappings.find((m) => m.queueUrl === d.outputs[OUTPUTS.compactionQueueUrl]);
    expect(compaction).toMatchObject({ batchSize: 1, reportBatchItemFailures: true });
    expect(d.functions.map((f) => f.functionName)).toContain(d.outputs[OUTPUTS.ingestFunction]);
  });

  it('hands the RPO monitor and compaction schedules to the local runner and serves the IAM function URL config', async () => {
    const monitor = d.functions.find((f) => f.functionName === d.outputs[OUTPUTS.monitorFunction]);
    const compaction = d.functions.find((f) => f.functionName === d.outputs[OUTPUTS.compactionFunction]);
    expect(d.schedules).toEqual(
      expect.arrayContaining([
        { logicalId: expect.any(String), functionLogicalId: monitor!.logicalId, everyMs: 60_000 },
        { logicalId: expect.any(String), functionLogicalId: compaction!.logicalId, everyMs: 6 * 3_600_000 },
      ]),
    );
    expect(d.schedules).toHaveLength(2);
    const url = await cloud.clients.lambda.send(
      new GetFunctionUrlConfigCommand({ FunctionName: d.outputs[OUTPUTS.queryFunction] }),
    );
    expect(url.AuthType).toBe('AWS_IAM');
  });

  it('delivers every Object Created under the safes prefix to the ingest queue, and nothing else', async () => {
    const bucket = d.outputs[OUTPUTS.bucket]!;
    await cloud.clients.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'elsewhere/x.bin', Body: 'no' }));
    await cloud.clients.s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: 'safes/s1/safe.json', Body: '{}' }),
    );
    // more events than one batch: moto's own (removed) mapping must not swallow any of them
    for (let rp = 1; rp <= 14; rp++) {
      const key = `safes/s1/rp/${String(rp).padStart(10, '0')}.json`;
      await cloud.clients.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: '{}' }));
    }
    const events = (await receiveAll(d.outputs[OUTPUTS.queueUrl]!)).map((m) => JSON.parse(m.Body!));
    expect(events).toHaveLength(15);
    expect(events.find((e) => e.detail.object.key === 'safes/s1/safe.json')).toMatchObject({
      source: 'aws.s3',
      'detail-type': 'Object Created',
      detail: { bucket: { name: bucket }, object: { key: 'safes/s1/safe.json', size: 2 } },
    });
  });

  it('is idempotent: deploying the same template again changes nothing', async () => {
    const again = await deployLocal(cloud.profile, { outdir: cloud.outdir });
    expect(again.outputs).toEqual(d.outputs);
    expect(again.reapplied.filter((r) => r.status === 'reapplied')).toEqual([]);
  });
});
