/**
 * The main job on the embedded local cloud, end to end so far:
 *   1. start a moto server and deploy the synthesized CDK stack into it (outputs printed);
 *   2. generate a 64 MiB disk image and back it up with the real agent into the stack's bucket
 *      (full), rewrite 1% of it and back it up again (incremental); list the recovery points;
 *   3. run the index Lambda under the local event-source-mapping runner: it validates each
 *      manifest (without reading block data) and commits both RPs in the DynamoDB catalog; the
 *      agent's `list --remote` shows them through the query Lambda;
 *   4. run the RPO monitor Lambda: the replication-lag metric it publishes is read back from the
 *      local CloudWatch, next to the RPO alarm;
 *   5. restore RP 1 through the restore Lambda (`cdp-agent restore --remote`: a plan with presigned
 *      URLs, no bucket access) and check it byte for byte; then delta-restore the latest RP over it
 *      (only the changed blocks are fetched) and check that too.
 *   6. compaction in the loop: two more backups, `cdp-agent policy --last 2 --lock 1` (RP 2
 *      expires), a compact task on the compaction queue: the compaction Lambda merges RP 2 into its
 *      successor and commits a new generation; every retained RP is restored again through the
 *      restore Lambda and checked byte for byte, and the expired RP is refused by name.
 *   --keep   leave the server running afterwards (stop it with `npm run cloud:stop`)
 *   --json   print one JSON summary at the end
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { DescribeAlarmsCommand, GetMetricStatisticsCommand } from '@aws-sdk/client-cloudwatch';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { DynamoDbCatalog } from '../adapters/dynamodb-catalog.ts';
import { makeImage, mutateImage } from '../bench/images.ts';
import { OUTPUTS } from '../lib/offsite-stack.ts';
import { cloudClients, cloudEnv } from './localcloud/clients.ts';
import { deployLocal } from './localcloud/deploy.ts';
import { startLocalFunctions } from './localcloud/local-functions.ts';
import { startMoto, stopMoto } from './localcloud/moto.ts';
import { outputsFile, serverStateFile, stateDir } from './localcloud/paths.ts';
import { motoProfile } from './localcloud/profile.ts';

const keep = process.argv.includes('--keep');
const json = process.argv.includes('--json');
const say = (s: string): void => {
  if (!json) console.log(s);
};
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const agentBin = fileURLToPath(new URL('../agent/bin/cdp-agent.ts', import.meta.url));

/** Runs the real agent without blocking this process (which serves the local Invoke API). */
async function agent(args: string[], env: Record<string, string>): Promise<string> {
  try {
    const r = await promisify(execFile)(process.execPath, [agentBin, ...args], {
      env: { ...process.env, ...env },
      encoding: 'utf8',
    });
    return r.stdout;
  } catch (e) {
    const err = e as { code?: number; stderr?: string };
    throw new Error(`cdp-agent ${args[0]} failed (exit ${err.code}): ${err.stderr}`);
  }
}

const t0 = Date.now();
const work = `${stateDir}/demo`;
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
const server = await startMoto({ detached: keep, logFile: `${stateDir}/moto.log` });
say(`local cloud: moto server at ${server.endpoint} (pid ${server.pid})`);
let ok = false;
try {
  const profile = motoProfile(server.endpoint);
  const d = await deployLocal(profile);
  writeFileSync(outputsFile, JSON.stringify(d, null, 2));
  say(`\n1. stack ${d.stackName} deployed in ${d.deployMs} ms; outputs:`);
  for (const [k, v] of Object.entries(d.outputs)) say(`   ${k.padEnd(26)} ${v}`);

  const bucket = d.outputs[OUTPUTS.bucket]!;
  const safe = `s3://${bucket}/safes/demo`;
  const img = `${work}/disk.img`;
  makeImage(64, img, 1);
  const env = cloudEnv(profile);
  const common = ['--safe', safe, '--device', img, '--state-dir', `${work}/agent-state`];
  say(`\n2. backup of a 64 MiB image into ${safe}`);
  const rp1Hash = sha(readFileSync(img));
  say(`   ${(await agent(['backup', ...common], env)).trim()}`);
  const m = mutateImage(img, 1, 7);
  say(`   rewrote 1% of the image (${(m.distinctBytes / 2 ** 20).toFixed(2)} MiB in scattered writes)`);
  const rp2Hash = sha(readFileSync(img));
  say(`   ${(await agent(['backup', ...common], env)).trim()}`);
  say((await agent(['list', '--safe', safe], env)).replace(/^/gm, '   ').trimEnd());

  const logDir = `${work}/logs`;
  const fns = await startLocalFunctions(d, { logDir });
  const batches = await fns.drain();
  const c = cloudClients(profile);
  const catalog = new DynamoDbCatalog(DynamoDBDocumentClient.from(c.ddb), d.outputs[OUTPUTS.table]!);
  const rps = await catalog.listRps('demo');
  const quarantined = await catalog.listQuarantined();
  const ingestId = d.functions.find((f) => f.functionName === d.outputs[OUTPUTS.ingestFunction])!.logicalId;
  const ingestLog = readFileSync(`${logDir}/${ingestId}.log`, 'utf8');
  const writes = ingestLog
    .split('\n')
    .filter((l) => l.includes('"recovery point committed"'))
    .map(
      (l) =>
        JSON.parse(l) as { rp: number; segments: number; catalogWrites: { requests: number; items: number } },
    );
  say(
    `\n3. index Lambda: ${batches.length} batch(es) → catalog: ${rps.map((r) => `RP ${r.rp} ${r.state}`).join(', ')}; ${quarantined.length} quarantined`,
  );
  for (const w of writes) {
    say(
      `   RP ${w.rp}: ${w.segments} new segment(s) → ${w.catalogWrites.items} catalog item writes in ${w.catalogWrites.requests} requests`,
    );
  }
  const invoke = await fns.serveInvoke();
  const queryFn = d.outputs[OUTPUTS.queryFunction]!;
  say(`   cdp-agent list --remote ${queryFn}:`);
  say(
    (
      await agent(['list', '--safe', safe, '--remote', queryFn], {
        ...env,
        AWS_ENDPOINT_URL_LAMBDA: invoke.endpoint,
      })
    )
      .replace(/^/gm, '     ')
      .trimEnd(),
  );

  const report = (await fns.invoke(d.outputs[OUTPUTS.monitorFunction]!, {})) as {
    safes: { safe: string; lagSeconds: number; rpoTargetSeconds: number; breached: boolean }[];
  };
  await fns.metrics.settle(); // EMF lines → the local CloudWatch
  const lagNow = report.safes.find((x) => x.safe === 'demo');
  const stats = await c.cloudwatch.send(
    new GetMetricStatisticsCommand({
      Namespace: 'CdpOffsite',
      MetricName: 'ReplicationLagSeconds',
      Dimensions: [
        { Name: 'service', Value: 'cdp-monitor' },
        { Name: 'Safe', Value: 'demo' },
      ],
      StartTime: new Date(Date.now() - 600_000),
      EndTime: new Date(Date.now() + 60_000),
      Period: 60,
      Statistics: ['Maximum'],
    }),
  );
  const lagMetric = stats.Datapoints?.[0]?.Maximum;
  const alarms = await c.cloudwatch.send(
    new DescribeAlarmsCommand({ AlarmNames: [d.outputs[OUTPUTS.rpoAlarm]!] }),
  );
  const alarm = alarms.MetricAlarms?.find((a) => a.MetricName === 'SafesOverRpo');
  say(
    `\n4. RPO monitor Lambda: safe demo lag ${lagNow?.lagSeconds} s (target ${lagNow?.rpoTargetSeconds} s${lagNow?.breached ? ', BREACHED' : ''}); ` +
      `CloudWatch CdpOffsite/ReplicationLagSeconds{Safe=demo} = ${lagMetric ?? 'missing'}; alarm ${alarm?.AlarmName} fires when ${alarm?.MetricName} > ${alarm?.Threshold} or the monitor goes silent (missing data: ${alarm?.TreatMissingData})`,
  );

  const restoreFn = d.outputs[OUTPUTS.restoreFunction]!;
  const restored = `${work}/restored.img`;
  const restoreEnv = { ...env, AWS_ENDPOINT_URL_LAMBDA: invoke.endpoint };
  /** `cdp-agent restore --remote`: the device at `rp` through the restore Lambda, into `to`. */
  const restoreVia = (rp: string, to: string): Promise<string> =>
    agent(
      ['restore', '--safe', safe, '--device', 'disk.img', '--rp', rp, '--to', to, '--remote', restoreFn],
      restoreEnv,
    );
  say(
    `\n5. restore through the restore Lambda (plan + presigned URLs): cdp-agent restore --remote ${restoreFn}`,
  );
  const r1 = await restoreVia('1', restored);
  const v1 = sha(readFileSync(restored)) === rp1Hash;
  say(`   ${r1.trim()}\n   RP 1 ${v1 ? 'matches' : 'DIFFERS FROM'} the image byte for byte`);
  const r2 = await restoreVia('latest', restored);
  const v2 = sha(readFileSync(restored)) === rp2Hash;
  say(
    `   ${r2.trim()}\n   RP 2 (delta restore over RP 1) ${v2 ? 'matches' : 'DIFFERS FROM'} the image byte for byte`,
  );

  say(`\n6. compaction: two more backups, then retention keeps the last 2 RPs plus RP 1 (locked)`);
  const hashes = [rp1Hash, rp2Hash];
  for (let i = 0; i < 2; i++) {
    mutateImage(img, 1, 11 + i);
    hashes.push(sha(readFileSync(img)));
    say(`   ${(await agent(['backup', ...common], env)).trim()}`);
  }
  await fns.drain();
  const policy = JSON.parse(
    await agent(['policy', '--safe', safe, '--last', '2', '--lock', '1', '--json'], env),
  ) as {
    expire: number[];
  };
  say(`   cdp-agent policy --last 2 --lock 1: RPs to merge: ${policy.expire.join(', ')}`);
  await c.sqs.send(
    new SendMessageCommand({
      QueueUrl: d.outputs[OUTPUTS.compactionQueueUrl]!,
      MessageBody: JSON.stringify({ action: 'compact', safe: 'demo' }),
    }),
  );
  await fns.drain();
  const compacted = await catalog.getSafe('demo');
  const states = (await catalog.listRps('demo')).map((r) => `RP ${r.rp} ${r.state}`);
  say(
    `   compaction Lambda: generation ${compacted?.generation ?? 'none'} covers RPs up to ${compacted?.compactedUpTo}; catalog: ${states.join(', ')}`,
  );
  const retained: { rp: number; ok: boolean }[] = [];
  for (const rp of [1, 3, 4]) {
    const to = `${work}/retained-${rp}.img`;
    await restoreVia(String(rp), to);
    retained.push({ rp, ok: sha(readFileSync(to)) === hashes[rp - 1] });
  }
  say(
    `   restored every retained RP through the restore Lambda: ${retained.map((r) => `RP ${r.rp} ${r.ok ? 'matches' : 'DIFFERS'}`).join(', ')}`,
  );
  const refused = await restoreVia('2', `${work}/expired.img`).then(
    () => 'restored (WRONG: it expired)',
    (e: Error) => e.message.split('\n').find((l) => l.includes('expired')) ?? e.message,
  );
  say(`   RP 2: ${refused.replace(/^.*?cdp-agent: /, '')}`);
  const compactionOk =
    compacted?.generation === 1 &&
    retained.every((r) => r.ok) &&
    states.join() === 'RP 1 committed,RP 2 expired,RP 3 committed,RP 4 committed';
  await fns.close();
  ok =
    v1 &&
    v2 &&
    compactionOk &&
    rps.map((r) => r.state).join() === 'committed,committed' &&
    quarantined.length === 0 &&
    lagMetric !== undefined &&
    alarm !== undefined;
  if (json)
    console.log(
      JSON.stringify(
        {
          endpoint: server.endpoint,
          outputs: d.outputs,
          catalog: rps.map((r) => ({ rp: r.rp, state: r.state, segments: r.segmentCount })),
          catalogWrites: writes.map((w) => ({ rp: w.rp, segments: w.segments, ...w.catalogWrites })),
          lag: lagNow,
          lagMetric,
          verified: { rp1: v1, rp2: v2 },
          compaction: { generation: compacted?.generation, catalog: states, retained },
          ok,
        },
        null,
        2,
      ),
    );
  say(`\n${ok ? 'done' : 'FAILED'} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  if (keep) {
    writeFileSync(serverStateFile, JSON.stringify(server));
    say(`server left running (npm run cloud:stop stops it); stack outputs in ${outputsFile}`);
  }
} catch (e) {
  console.error(`demo failed: ${(e as Error).stack ?? e}`);
} finally {
  if (!keep) await stopMoto(server.pid);
}
process.exit(ok ? 0 : 1);
