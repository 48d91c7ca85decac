/**
 * A short, seeded run of the torture suite (test/torture/torture.ts; `npm run torture` runs it for
 * as long as asked): backups (two of one device at once too), replication, onsite and function
 * compactions with a zero grace period, restores and verifies, overlapping and killed with SIGKILL
 * at random moments, on a directory safe and the embedded S3. After every step every RP any command
 * reported committed restores byte for byte or was merged by retention; at the end nothing is
 * orphaned and nothing referenced is missing. Replay a failure with TORTURE_SEED=<seed>.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Deployment, deployLocal } from '../../scripts/localcloud/deploy.ts';
import { type LocalFunctions, startLocalFunctions } from '../../scripts/localcloud/local-functions.ts';
import { useLocalCloud } from '../support/local-cloud.ts';
import { Torture } from '../torture/torture.ts';

const cloud = useLocalCloud();
const seed = Number(process.env.TORTURE_SEED ?? 20261203);
let d: Deployment;
let fns: LocalFunctions;
let root: string;

beforeAll(async () => {
  d = await deployLocal(cloud.profile, { outdir: cloud.outdir });
  fns = await startLocalFunctions(d);
  root = mkdtempSync(join(tmpdir(), 'torture-it-'));
});
afterAll(async () => {
  await fns?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('torture (short seeded run)', () => {
  it(`loses nothing and leaves nothing behind (seed ${seed})`, async () => {
    console.log(`torture seed ${seed}`);
    const t = new Torture({
      seed,
      steps: 14,
      killRate: 0.4,
      root,
      cloud: { profile: cloud.profile, d, fns, s3: cloud.clients.s3 },
    });
    const stats = await t.run();
    console.log(JSON.stringify(stats));
    expect(stats.failures).toEqual([]);
    expect(stats.committed).toBeGreaterThan(3);
    expect(Object.values(stats.kills).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    expect(stats.orphans + stats.missing).toBe(0);
    // the offsite safe's RPs reach the catalog through the index function, none quarantined
    const batches = await fns.drain();
    expect(batches.filter((b) => b.error)).toEqual([]);
  }, 600_000);
});
