/**
 * `cdp-agent list --remote [function]`: the recovery points of a safe as the offsite catalog knows
 * them (committed, waiting for a parent, quarantined with the reason) and the safe's replication
 * lag, from the stack's query function (lambda:InvokeFunction, IAM-authorized).
 */
import type { QueryRequest } from '#core/catalog-api.ts';
import type { RpRecord } from '#core/ports/catalog.ts';
import type { SafeLag } from '#core/rpo.ts';
import { RemoteFunction } from '../remote-function.ts';
import { openSafeLocation } from '../safe-location.ts';

export interface RemoteListing {
  readonly safe: string;
  readonly lag: SafeLag | null;
  readonly recoveryPoints: readonly RpRecord[];
}

export async function listRemote(safeArg: string, fn: string): Promise<RemoteListing> {
  const { safe } = await openSafeLocation(safeArg);
  const query = new RemoteFunction(fn, 'query', 'QueryFunctionName');
  const ask = <T>(request: QueryRequest): Promise<T> => query.call<T>(request);
  try {
    const [rps, lag] = await Promise.all([
      ask<{ rps: RpRecord[] }>({ action: 'rps', safe }),
      ask<{ safes: SafeLag[] }>({ action: 'lag', safe }),
    ]);
    return { safe, lag: lag.safes[0] ?? null, recoveryPoints: rps.rps };
  } finally {
    await query.close();
  }
}

export async function listRemoteCommand(o: {
  safe: string;
  remote: string;
  json?: boolean;
}): Promise<number> {
  const r = await listRemote(o.safe, o.remote);
  if (o.json) {
    console.log(JSON.stringify(r, null, 1));
    return 0;
  }
  const mib = (n = 0) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  console.log(`${o.safe} in the offsite catalog (${o.remote}):`);
  if (r.recoveryPoints.length === 0) console.log('  no recovery points');
  else {
    console.log(
      'RP  time                      state        kind         changed      stored       devices / reason',
    );
    for (const p of r.recoveryPoints) {
      const kind = p.parent === null ? 'full' : 'incremental';
      const tail = p.state === 'committed' ? (p.devices ?? []).map((d) => d.id).join(', ') : (p.reason ?? '');
      console.log(
        `${String(p.rp).padEnd(3)} ${(p.createdAt ?? '-').padEnd(25)} ${p.state.padEnd(12)} ${kind.padEnd(12)} ${mib(p.changedBytes).padEnd(12)} ${mib(p.storedBytes).padEnd(12)} ${tail}`,
      );
    }
  }
  if (r.lag) {
    console.log(
      `lag ${r.lag.lagSeconds} s against an RPO target of ${r.lag.rpoTargetSeconds} s${r.lag.breached ? ': RPO BREACHED' : ''}`,
    );
  }
  return 0;
}
