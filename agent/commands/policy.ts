/**
 * `cdp-agent policy --safe <dir|s3://…> [--last N] [--hourly N] [--daily N] [--weekly N]
 * [--monthly N] [--lock RP] [--unlock RP]`: shows or changes the retention policy kept in the safe
 * (`policy.json`), which `cdp-agent compact` and the offsite compaction Lambda apply.
 */

import { KEEP_ALL, readPolicy, writePolicy } from '#core/compaction/policy.ts';
import { CdpError } from '#core/errors.ts';
import type { StoredPolicy } from '#core/format/generation.ts';
import { planRetention } from '#core/retention.ts';
import { SafeReader } from '#core/safe-reader.ts';
import { openSafeLocation } from '../safe-location.ts';

export interface PolicyOptions {
  readonly safe: string;
  readonly last?: string;
  readonly hourly?: string;
  readonly daily?: string;
  readonly weekly?: string;
  readonly monthly?: string;
  readonly lock?: string[];
  readonly unlock?: string[];
  readonly json?: boolean;
}

function count(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new CdpError('E_USAGE', `--${name} ${v}: a whole number is needed`);
  return Number(v);
}

export async function policyCommand(o: PolicyOptions): Promise<number> {
  const loc = await openSafeLocation(o.safe);
  const reader = new SafeReader(loc.store, loc.safe);
  if (!(await reader.config())) throw new CdpError('E_NOT_FOUND', `no safe at ${o.safe}`);
  const current = (await readPolicy(loc.store, loc.safe)) ?? KEEP_ALL;
  const next: StoredPolicy = {
    last: count('last', o.last) ?? current.last,
    hourly: count('hourly', o.hourly) ?? current.hourly,
    daily: count('daily', o.daily) ?? current.daily,
    weekly: count('weekly', o.weekly) ?? current.weekly,
    monthly: count('monthly', o.monthly) ?? current.monthly,
    locked: current.locked,
  };
  const rps = await reader.listRps();
  const locks = new Set(next.locked);
  for (const v of o.lock ?? []) {
    const rp = count('lock', v)!;
    if (!rps.includes(rp)) throw new CdpError('E_NOT_FOUND', `--lock ${rp}: the safe has no RP ${rp}`);
    locks.add(rp);
  }
  for (const v of o.unlock ?? []) locks.delete(count('unlock', v)!);
  const policy = { ...next, locked: [...locks].sort((a, b) => a - b) };
  const changed = JSON.stringify(policy) !== JSON.stringify(current);
  if (changed) await writePolicy(loc.store, loc.safe, policy);
  // what the next compaction would do
  const info = await Promise.all(
    rps.map(async (rp) => ({ rp, createdAt: (await reader.manifest(rp)).createdAt, locked: locks.has(rp) })),
  );
  const { locked: _l, ...gfs } = policy;
  const plan = planRetention(info, gfs);
  if (o.json) {
    console.log(
      JSON.stringify({ safe: loc.safe, policy, changed, keep: plan.keep, expire: plan.expire }, null, 1),
    );
    return 0;
  }
  const p = policy;
  const last = p.last === KEEP_ALL.last ? 'all' : String(p.last);
  console.log(
    `safe ${loc.safe}: keep last ${last}, hourly ${p.hourly}, daily ${p.daily}, weekly ${p.weekly}, monthly ${p.monthly}` +
      (p.locked.length ? `, locked RPs ${p.locked.join(', ')}` : '') +
      (changed ? ' (saved)' : ''),
  );
  console.log(
    `next compaction keeps ${plan.keep.length} RPs and merges ${plan.expire.length}` +
      (plan.expire.length ? ` (${plan.expire.join(', ')})` : ''),
  );
  return 0;
}
