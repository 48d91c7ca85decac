/**
 * `cdp-agent compact --safe <dir|s3://…>`: applies the safe's retention policy and compacts it with
 * the same core the offsite Lambda runs (core/compaction): expired RPs merged, restore chains
 * bounded by synthetic fulls, sparse segments rewritten, garbage deleted after the grace period.
 */
import { COMPACTION_DEFAULTS, compactSafe } from '#core/compaction/compact.ts';
import { KEEP_ALL, readPolicy } from '#core/compaction/policy.ts';
import { CdpError } from '#core/errors.ts';
import { parseDuration } from '../run/config.ts';
import { openSafeLocation } from '../safe-location.ts';
import { agentIdentity, defaultStateDir } from '../state/agent-state.ts';

export interface CompactOptions {
  readonly safe: string;
  readonly grace?: string;
  readonly maxDeltas?: string;
  readonly stateDir?: string;
  readonly json?: boolean;
}

export async function compactCommand(o: CompactOptions): Promise<number> {
  const loc = await openSafeLocation(o.safe);
  const graceMs = o.grace ? parseDuration(o.grace) : COMPACTION_DEFAULTS.graceMs;
  const maxDeltas = o.maxDeltas === undefined ? undefined : Number(o.maxDeltas);
  if (maxDeltas !== undefined && !(Number.isInteger(maxDeltas) && maxDeltas >= 0))
    throw new CdpError('E_USAGE', `--max-deltas ${o.maxDeltas}: a whole number ≥ 0 is needed`);
  const policy = (await readPolicy(loc.store, loc.safe)) ?? KEEP_ALL;
  const owner = `agent ${agentIdentity(o.stateDir ?? defaultStateDir()).id}`;
  const r = await compactSafe(loc.store, loc.safe, {
    policy,
    graceMs,
    maxDeltas,
    owner,
    log: o.json ? undefined : (m) => console.error(m),
  });
  if (o.json) console.log(JSON.stringify({ safe: loc.safe, ...r }, null, 1));
  else
    console.log(
      r.generation === null
        ? `safe ${loc.safe}: nothing to compact (${r.kept.length} RPs; ${r.garbageDeleted} objects collected)`
        : `safe ${loc.safe}: generation ${r.generation} (${r.shards} shard${r.shards === 1 ? '' : 's'}): kept ${r.kept.length} RPs, merged ${r.expired.length}, ` +
            `rewrote ${r.segmentsRewritten} segments (${r.bytesRewritten} bytes), deleted ${r.garbageDeleted} objects, ` +
            `${r.garbagePending} waiting for the grace period (${(r.durationMs / 1000).toFixed(1)} s)`,
    );
  return 0;
}
