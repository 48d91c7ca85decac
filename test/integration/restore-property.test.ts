/**
 * Property, through the deployed stack: random histories (1 and 2 devices, encrypted and not) are
 * backed up into the stack's bucket, committed by the index function, and every RP of every
 * device restored through the restore function's plan and presigned URLs equals the image at
 * that time.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3ObjectStore } from '#adapters/s3-store.ts';
import { remotePages } from '../../agent/restore/plans.ts';
import { runRestore } from '../../agent/restore/run-restore.ts';
import { UrlSource } from '../../agent/restore/segment-source.ts';
import { OUTPUTS } from '../../lib/offsite-stack.ts';
import { cloudEnv } from '../../scripts/localcloud/clients.ts';
import { type Deployment, deployLocal } from '../../scripts/localcloud/deploy.ts';
import { type LocalFunctions, startLocalFunctions } from '../../scripts/localcloud/local-functions.ts';
import { useLocalCloud } from '../support/local-cloud.ts';
import { runHistory, step } from '../support/random-history.ts';
import { sha256 } from '../support/read-image.ts';

const cloud = useLocalCloud();
let d: Deployment;
let fns: LocalFunctions;

beforeAll(async () => {
  d = await deployLocal(cloud.profile, { outdir: cloud.outdir });
  fns = await startLocalFunctions(d);
  const invoke = await fns.serveInvoke();
  // remotePages' Lambda client takes region, credentials and endpoint from the environment
  Object.assign(process.env, cloudEnv(cloud.profile), { AWS_ENDPOINT_URL_LAMBDA: invoke.endpoint });
});
afterAll(async () => fns?.close());

describe('restore through the restore function', () => {
  it('gives every RP of random histories exactly', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 2 }),
        fc.boolean(),
        fc.array(step, { minLength: 1, maxLength: 8 }),
        async (nDevices, encrypted, steps) => {
          const safe = `prop-${++run}`;
          const root = mkdtempSync(join(tmpdir(), 'rprop-'));
          try {
            const store = new S3ObjectStore(
              cloud.clients.s3,
              d.outputs[OUTPUTS.bucket]!,
              `safes/${safe}`,
              safe,
            );
            const { expected, keys } = await runHistory(root, nDevices, encrypted, steps, { safe, store });
            await fns.drain();
            for (let rp = 1; rp <= expected.length; rp++) {
              for (let dev = 0; dev < nDevices; dev++) {
                const urls = new Map<string, string>();
                const to = join(root, `r${rp}-${dev}.img`);
                await runRestore({
                  pages: remotePages(
                    d.outputs[OUTPUTS.restoreFunction]!,
                    { safe, device: `dev${dev}`, rp },
                    urls,
                  ),
                  source: new UrlSource((s) => urls.get(s)!, safe),
                  to,
                  keysFor: () => keys,
                });
                expect(sha256(readFileSync(to)), `${safe} RP ${rp} dev${dev}`).toBe(expected[rp - 1]![dev]);
              }
            }
          } finally {
            rmSync(root, { recursive: true, force: true });
          }
        },
      ),
      { numRuns: 5 },
    );
  });
});
