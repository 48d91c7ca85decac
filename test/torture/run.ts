/**
 * `npm run torture [-- --seed N --minutes M --steps S --kill-rate R]`: the torture suite
 * (test/torture/torture.ts) for as long as asked, on its own moto server and deployed stack.
 * Prints the seed first, a line per step, and the totals; exits 1 on any failure.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cloudClients } from '../../scripts/localcloud/clients.ts';
import { deployLocal } from '../../scripts/localcloud/deploy.ts';
import { startLocalFunctions } from '../../scripts/localcloud/local-functions.ts';
import { startMoto, stopMoto } from '../../scripts/localcloud/moto.ts';
import { motoProfile } from '../../scripts/localcloud/profile.ts';
import { Torture } from './torture.ts';

const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    minutes: { type: 'string', default: '15' },
    steps: { type: 'string', default: '100000' },
    'kill-rate': { type: 'string', default: '0.4' },
  },
});
const seed = values.seed ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
console.log(`torture seed ${seed} (replay: npm run torture -- --seed ${seed})`);
const root = mkdtempSync(join(tmpdir(), 'torture-'));
const server = await startMoto();
let failed = true;
try {
  const profile = motoProfile(server.endpoint);
  const d = await deployLocal(profile, { outdir: join(root, 'cdk.out') });
  const fns = await startLocalFunctions(d);
  try {
    const t = new Torture({
      seed,
      steps: Number(values.steps),
      deadlineMs: Number(values.minutes) * 60_000,
      killRate: Number(values['kill-rate']),
      root: join(root, 'world'),
      cloud: { profile, d, fns, s3: cloudClients(profile).s3 },
      log: (l) => console.log(l),
    });
    const stats = await t.run();
    const batches = await fns.drain();
    const errors = batches.filter((b) => b.error);
    console.log(JSON.stringify({ ...stats, functionErrors: errors.length }, null, 1));
    failed = stats.failures.length > 0 || errors.length > 0;
  } finally {
    await fns.close();
  }
} finally {
  await stopMoto(server.pid);
  if (!failed) rmSync(root, { recursive: true, force: true });
  else console.log(`world kept at ${root}`);
}
process.exit(failed ? 1 : 0);
