/**
 * The catalog as deployed: the DynamoDB adapter meets the Catalog contract on the stack's table;
 * the RPO monitor function publishes lag (read back from the local CloudWatch through the EMF
 * pipeline) and reports a breach when a safe's agent goes silent; the query function answers
 * direct invocations and function-URL requests.
 */
import { GetMetricStatisticsCommand } from '@aws-sdk/client-cloudwatch';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoDbCatalog } from '#adapters/dynamodb-catalog.ts';
import type { LagReport } from '#core/rpo.ts';
import { OUTPUTS } from '../../lib/offsite-stack.ts';
import { cloudEnv } from '../../scripts/localcloud/clients.ts';
import { type Deployment, deployLocal } from '../../scripts/localcloud/deploy.ts';
import { type LocalFunctions, startLocalFunctions } from '../../scripts/localcloud/local-functions.ts';
import { catalogContract } from '../contract/catalog.contract.ts';
import { agent } from '../support/agent-cli.ts';
import { useLocalCloud } from '../support/local-cloud.ts';

const cloud = useLocalCloud();
let d: Deployment;
let fns: LocalFunctions;
let catalog: DynamoDbCatalog;

beforeAll(async () => {
  d = await deployLocal(cloud.profile, { outdir: cloud.outdir });
  fns = await startLocalFunctions(d);
  catalog = new DynamoDbCatalog(DynamoDBDocumentClient.from(cloud.clients.ddb), d.outputs[OUTPUTS.table]!);
});
afterAll(async () => fns?.close());

catalogContract('DynamoDB table of the deployed stack', async () => catalog);

const minutesAgo = (m: number): string => new Date(Date.now() - m * 60_000).toISOString();

async function metric(name: string, dims: Record<string, string>): Promise<number | undefined> {
  const r = await cloud.clients.cloudwatch.send(
    new GetMetricStatisticsCommand({
      Namespace: 'CdpOffsite',
      MetricName: name,
      Dimensions: Object.entries(dims).map(([Name, Value]) => ({ Name, Value })),
      StartTime: new Date(Date.now() - 3_600_000),
      EndTime: new Date(Date.now() + 60_000),
      Period: 60,
      Statistics: ['Maximum'],
    }),
  );
  const points = r.Datapoints ?? [];
  return points.length === 0 ? undefined : Math.max(...points.map((p) => p.Maximum ?? 0));
}

describe('RPO monitor function', () => {
  it('publishes each safe’s lag and flags a silent agent past its RPO target', async () => {
    await catalog.commitRp({
      safe: 'fresh',
      rp: 1,
      state: 'committed',
      parent: null,
      createdAt: minutesAgo(1),
      updatedAt: minutesAgo(1),
      manifestKey: 'safes/fresh/rp/0000000001.json',
    });
    await catalog.commitRp({
      safe: 'silent',
      rp: 1,
      state: 'committed',
      parent: null,
      createdAt: minutesAgo(90),
      updatedAt: minutesAgo(90),
      manifestKey: 'safes/silent/rp/0000000001.json',
    });
    await catalog.setRpoTarget('silent', 1800, minutesAgo(90));
    const report = (await fns.invoke(d.outputs[OUTPUTS.monitorFunction]!, {})) as LagReport;
    const bySafe = Object.fromEntries(report.safes.map((s) => [s.safe, s]));
    expect(bySafe.fresh).toMatchObject({ newestRp: 1, rpoTargetSeconds: 3600, breached: false });
    expect(bySafe.fresh!.lagSeconds).toBeGreaterThanOrEqual(59);
    expect(bySafe.silent).toMatchObject({ rpoTargetSeconds: 1800, breached: true });
    expect(bySafe.silent!.lagSeconds).toBeGreaterThanOrEqual(5399);
    expect(report.breaches).toBeGreaterThanOrEqual(1);

    await fns.metrics.settle();
    const service = { service: 'cdp-monitor' };
    expect(await metric('ReplicationLagSeconds', { ...service, Safe: 'silent' })).toBeGreaterThanOrEqual(
      5399,
    );
    expect(await metric('SafesOverRpo', service)).toBe(report.breaches);
  });
});

describe('query function', () => {
  it('answers direct invocations: safes, RPs, the RP at a time, lag, quarantine', async () => {
    // biome-ignore lint/suspicious/noExplicitAny: the answers are checked field by field below
    const q = (payload: unknown) => fns.invoke(d.outputs[OUTPUTS.queryFunction]!, payload) as Promise<any>;
    await catalog.commitRp({
      safe: 'q1',
      rp: 1,
      state: 'committed',
      parent: null,
      createdAt: '2026-02-01T00:00:00.000Z',
      updatedAt: '2026-02-01T00:00:01.000Z',
      manifestKey: 'safes/q1/rp/0000000001.json',
    });
    await catalog.commitRp({
      safe: 'q1',
      rp: 2,
      state: 'committed',
      parent: 1,
      createdAt: '2026-02-01T01:00:00.000Z',
      updatedAt: '2026-02-01T01:00:01.000Z',
      manifestKey: 'safes/q1/rp/0000000002.json',
    });
    expect((await q({ action: 'safes' })).safes.map((s: { safe: string }) => s.safe)).toContain('q1');
    expect((await q({ action: 'rps', safe: 'q1' })).rps.map((r: { rp: number }) => r.rp)).toEqual([1, 2]);
    expect((await q({ action: 'rp', safe: 'q1', at: '2026-02-01T00:30:00Z' })).rp.rp).toBe(1);
    expect((await q({ action: 'rp', safe: 'q1', at: 'latest' })).rp.rp).toBe(2);
    expect((await q({ action: 'rp', safe: 'q1', at: 7 })).rp).toBeNull();
    expect((await q({ action: 'lag', safe: 'q1' })).safes).toHaveLength(1);
    expect(await q({ action: 'quarantine', safe: 'q1' })).toEqual({ quarantined: [] });
    await expect(q({ action: 'rps', safe: '../etc' })).rejects.toThrow(/invalid query \(safe: /);
  });

  it('answers function URL requests, with 400 naming a bad path', async () => {
    const url = (rawPath: string, query: Record<string, string> = {}) =>
      fns.invoke(d.outputs[OUTPUTS.queryFunction]!, {
        version: '2.0',
        rawPath,
        rawQueryString: new URLSearchParams(query).toString(),
        queryStringParameters: query,
        headers: {},
        isBase64Encoded: false,
        requestContext: { http: { method: 'GET', path: rawPath } },
      }) as Promise<{ statusCode: number; body: string }>;
    const ok = await url('/safes/q1/rps', { limit: '1' });
    expect(ok.statusCode).toBe(200);
    expect(JSON.parse(ok.body).rps.map((r: { rp: number }) => r.rp)).toEqual([1]);
    const at = await url('/safes/q1/rps/latest');
    expect(JSON.parse(at.body).rp.rp).toBe(2);
    const bad = await url('/nothing/here');
    expect(bad.statusCode).toBe(400);
    expect(JSON.parse(bad.body).error).toMatch(/invalid query/);
  });
});

describe('cdp-agent rpo', () => {
  it("sets a safe's RPO target, which the monitor then uses", async () => {
    const r = await agent(
      [
        'rpo',
        '--safe',
        's3://any-bucket/safes/fresh',
        '--target',
        '2m',
        '--table',
        d.outputs[OUTPUTS.table]!,
        '--json',
      ],
      cloudEnv(cloud.profile),
    );
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ safe: 'fresh', rpoTargetSeconds: 120 });
    const report = (await fns.invoke(d.outputs[OUTPUTS.monitorFunction]!, {})) as LagReport;
    expect(report.safes.find((s) => s.safe === 'fresh')).toMatchObject({ rpoTargetSeconds: 120 });
  });
});
