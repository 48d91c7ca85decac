/**
 * The main job on the embedded local cloud, end to end so far:
 *   1. start a moto server and deploy the synthesized CDK stack into it (outputs printed);
 *   2. generate a 64 MiB disk image and back it up with the real agent into the stack's bucket
 *      (full), rewrite 1% of it and back it up again (incremental); list the recovery points;
 *   3. run the ingest Lambda under the local event-source-mapping runner: every uploaded object
 *      is recorded in the catalog;
 *   4. read both recovery points back from S3 and check them byte for byte against the images.
 * Later issues add the index, compaction and restore functions to this loop.
 *   --keep   leave the server running afterwards (stop it with `npm run cloud:stop`)
 *   --json   print one JSON summary at the end
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { DynamoDbUploadLog } from '../adapters/dynamodb-upload-log.ts';
import { S3ObjectStore } from '../adapters/s3-store.ts';
import { makeImage, mutateImage } from '../bench/images.ts';
import { SafeReader } from '../core/safe-reader.ts';
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

function agent(args: string[], env: Record<string, string>): string {
  const r = spawnSync(process.execPath, [agentBin, ...args], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`cdp-agent ${args[0]} failed (exit ${r.status}): ${r.stderr}`);
  return r.stdout;
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
  say(`   ${agent(['backup', ...common], env).trim()}`);
  const m = mutateImage(img, 1, 7);
  say(`   rewrote 1% of the image (${(m.distinctBytes / 2 ** 20).toFixed(2)} MiB in scattered writes)`);
  const rp2Hash = sha(readFileSync(img));
  say(`   ${agent(['backup', ...common], env).trim()}`);
  say(agent(['list', '--safe', safe], env).replace(/^/gm, '   ').trimEnd());

  const fns = await startLocalFunctions(d, { logDir: `${stateDir}/logs` });
  const batches = await fns.drain();
  await fns.close();
  const c = cloudClients(profile);
  const log = new DynamoDbUploadLog(DynamoDBDocumentClient.from(c.ddb), d.outputs[OUTPUTS.table]!);
  const recorded = await log.listObjects('demo');
  const counts = new Map<string, number>();
  for (const o of recorded) counts.set(o.kind, (counts.get(o.kind) ?? 0) + 1);
  const byKind = [...counts.entries()];
  const quarantined = await log.listQuarantined();
  say(
    `\n3. ingest Lambda: ${batches.length} batch(es) → catalog: ${byKind.map(([k, n]) => `${n} ${k}`).join(', ')}; ${quarantined.length} quarantined`,
  );

  const reader = new SafeReader(new S3ObjectStore(c.s3, bucket, 'safes/demo', 'demo'), 'demo');
  const check = async (rp: number, want: string): Promise<boolean> =>
    sha(await reader.readImage(rp, 'disk.img')) === want;
  const v1 = await check(1, rp1Hash);
  const v2 = await check(2, rp2Hash);
  say(
    `\n4. read back from S3: RP 1 ${v1 ? 'matches' : 'DIFFERS FROM'} the image, RP 2 ${v2 ? 'matches' : 'DIFFERS FROM'} the image`,
  );
  ok = v1 && v2 && recorded.length > 0 && quarantined.length === 0;
  if (json)
    console.log(
      JSON.stringify(
        {
          endpoint: server.endpoint,
          outputs: d.outputs,
          catalog: Object.fromEntries(byKind),
          verified: { rp1: v1, rp2: v2 },
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
