/**
 * Onsite then offsite: backups go to a primary directory safe; `cdp-agent replicate` copies them to
 * a redundant onsite copy and to the stack's bucket, where the index function commits each RP.
 * Both copies restore every RP byte for byte (the offsite one through the restore function).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoDbCatalog } from '#adapters/dynamodb-catalog.ts';
import { OUTPUTS } from '../../lib/offsite-stack.ts';
import { cloudEnv } from '../../scripts/localcloud/clients.ts';
import { type Deployment, deployLocal } from '../../scripts/localcloud/deploy.ts';
import { type LocalFunctions, startLocalFunctions } from '../../scripts/localcloud/local-functions.ts';
import { agent } from '../support/agent-cli.ts';
import { useLocalCloud } from '../support/local-cloud.ts';
import { sha256 } from '../support/read-image.ts';

const cloud = useLocalCloud();
const MiB = 2 ** 20;
let d: Deployment;
let fns: LocalFunctions;
let root: string;

beforeAll(async () => {
  d = await deployLocal(cloud.profile, { outdir: cloud.outdir });
  fns = await startLocalFunctions(d);
  root = mkdtempSync(join(tmpdir(), 'repl-it-'));
});
afterAll(async () => {
  await fns?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('onsite primary, redundant onsite copy, offsite copy', () => {
  it('replicates to both and restores every RP from each byte for byte', async () => {
    const invoke = await fns.serveInvoke();
    const env = { ...cloudEnv(cloud.profile), AWS_ENDPOINT_URL_LAMBDA: invoke.endpoint };
    const dev = join(root, 'vol.img');
    const primary = join(root, 'primary', 'db1');
    const nas = join(root, 'nas', 'db1');
    const offsite = `s3://${d.outputs[OUTPUTS.bucket]}/safes/db1`;
    const img = Buffer.concat([randomBytes(2 * MiB), Buffer.alloc(MiB), Buffer.alloc(MiB, 'row\n')]);
    const hashes: string[] = [];
    for (let i = 0; i < 3; i++) {
      randomBytes(64 * 1024).copy(img, i * 300 * 1024);
      writeFileSync(dev, img);
      const b = await agent(
        ['backup', '--safe', primary, '--device', dev, '--state-dir', join(root, 'state')],
        env,
      );
      expect(b.code, b.stderr).toBe(0);
      hashes.push(sha256(img));
      // replicate after every RP, as `cdp-agent run` does
      const r = await agent(['replicate', '--from', primary, '--to', nas, '--to', offsite, '--json'], env);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).results.map((x: { copiedRps: number[] }) => x.copiedRps)).toEqual([
        [i + 1],
        [i + 1],
      ]);
    }
    await fns.drain();
    const catalog = new DynamoDbCatalog(
      DynamoDBDocumentClient.from(cloud.clients.ddb),
      d.outputs[OUTPUTS.table]!,
    );
    expect((await catalog.listRps('db1')).map((r) => r.state)).toEqual([
      'committed',
      'committed',
      'committed',
    ]);
    for (let rp = 1; rp <= 3; rp++) {
      const fromNas = join(root, `nas-${rp}.img`);
      const a = await agent(
        ['restore', '--safe', nas, '--device', 'vol.img', '--rp', String(rp), '--to', fromNas],
        env,
      );
      expect(a.code, a.stderr).toBe(0);
      expect(sha256(readFileSync(fromNas)), `RP ${rp} from the onsite copy`).toBe(hashes[rp - 1]);
      const fromS3 = join(root, `s3-${rp}.img`);
      const b = await agent(
        [
          'restore',
          '--safe',
          offsite,
          '--device',
          'vol.img',
          '--rp',
          String(rp),
          '--to',
          fromS3,
          '--remote',
          d.outputs[OUTPUTS.restoreFunction]!,
        ],
        env,
      );
      expect(b.code, b.stderr).toBe(0);
      expect(sha256(readFileSync(fromS3)), `RP ${rp} from offsite`).toBe(hashes[rp - 1]);
    }
  });
});
