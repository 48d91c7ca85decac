/**
 * The main job on the embedded local cloud: start a moto server, deploy the synthesized CDK stack
 * into it, print its outputs, and show an upload flowing S3 → EventBridge → SQS → ingest Lambda →
 * catalog. Later steps (backup, restore, compaction) are added here as they are built.
 *   --keep   leave the server running afterwards (stop it with `npm run cloud:stop`)
 *   --json   print one JSON document instead of text
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { DynamoDbUploadLog } from '../adapters/dynamodb-upload-log.ts';
import { safeConfigKey } from '../core/keys.ts';
import { OUTPUTS } from '../lib/offsite-stack.ts';
import { cloudClients } from './localcloud/clients.ts';
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

const t0 = Date.now();
mkdirSync(stateDir, { recursive: true });
const server = await startMoto({ detached: keep, logFile: `${stateDir}/moto.log` });
say(`local cloud: moto server at ${server.endpoint} (pid ${server.pid})`);
let exitCode = 0;
try {
  const profile = motoProfile(server.endpoint);
  const d = await deployLocal(profile);
  writeFileSync(outputsFile, JSON.stringify(d, null, 2));
  say(`stack ${d.stackName} deployed in ${d.deployMs} ms; outputs:`);
  for (const [k, v] of Object.entries(d.outputs)) say(`  ${k.padEnd(26)} ${v}`);

  const c = cloudClients(profile);
  const bucket = d.outputs[OUTPUTS.bucket]!;
  const key = safeConfigKey('demo');
  await c.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: '{"demo":true}' }));
  const fns = await startLocalFunctions(d, { logDir: `${stateDir}/logs` });
  const batches = await fns.drain();
  await fns.close();
  const log = new DynamoDbUploadLog(DynamoDBDocumentClient.from(c.ddb), d.outputs[OUTPUTS.table]!);
  const recorded = await log.listObjects('demo');
  const ok = recorded.some((o) => o.key === key);
  say(
    `ingest: put s3://${bucket}/${key} → ${batches.length} batch(es) → catalog has ${recorded.length} object(s) for safe 'demo'`,
  );
  if (!ok) {
    exitCode = 1;
    console.error('demo: the uploaded object did not reach the catalog');
  }
  if (json)
    console.log(
      JSON.stringify({ endpoint: server.endpoint, outputs: d.outputs, ingested: recorded, ok }, null, 2),
    );
  say(`done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  if (keep) {
    writeFileSync(serverStateFile, JSON.stringify(server));
    say(`server left running (npm run cloud:stop stops it); stack outputs in ${outputsFile}`);
  }
} catch (e) {
  exitCode = 1;
  console.error(`demo failed: ${(e as Error).stack ?? e}`);
} finally {
  if (!keep) await stopMoto(server.pid);
}
process.exit(exitCode);
