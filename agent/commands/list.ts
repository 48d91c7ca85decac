/** `cdp-agent list`: the recovery points of a safe, oldest first. */
import { SafeReader } from '#core/safe-reader.ts';
import { openSafeLocation } from '../safe-location.ts';

export interface ListOptions {
  readonly safe: string;
  readonly json?: boolean;
}

export interface ListedRp {
  readonly rp: number;
  readonly time: string;
  readonly kind: 'full' | 'incremental';
  readonly devices: {
    id: string;
    sizeBytes: number;
    blockSize: number;
    changedBytes: number;
    storedBytes: number;
  }[];
  readonly changedBytes: number;
  readonly storedBytes: number;
}

export async function listRecoveryPoints(safeArg: string): Promise<ListedRp[]> {
  const loc = await openSafeLocation(safeArg);
  const reader = new SafeReader(loc.store, loc.safe);
  const out: ListedRp[] = [];
  for (const rp of await reader.listRps()) {
    const m = await reader.manifest(rp);
    out.push({
      rp,
      time: m.createdAt,
      kind: m.parent === null ? 'full' : 'incremental',
      devices: m.devices.map((d) => ({
        id: d.id,
        sizeBytes: d.sizeBytes,
        blockSize: d.blockSize,
        changedBytes: d.changedBlocks * d.blockSize,
        storedBytes: d.storedBytes,
      })),
      changedBytes: m.stats.changedBytes,
      storedBytes: m.stats.storedBytes,
    });
  }
  return out;
}

export async function listCommand(o: ListOptions): Promise<number> {
  const rps = await listRecoveryPoints(o.safe);
  if (o.json) {
    console.log(JSON.stringify({ safe: o.safe, recoveryPoints: rps }, null, 1));
    return 0;
  }
  if (rps.length === 0) {
    console.log(`${o.safe}: no recovery points`);
    return 0;
  }
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  console.log('RP  time                      kind         changed      stored       devices');
  for (const r of rps) {
    const devs = r.devices
      .map((d) => `${d.id} (${mib(d.sizeBytes)}, ${d.blockSize / 1024} KiB blocks)`)
      .join(', ');
    console.log(
      `${String(r.rp).padEnd(3)} ${r.time.padEnd(25)} ${r.kind.padEnd(12)} ${mib(r.changedBytes).padEnd(12)} ${mib(r.storedBytes).padEnd(12)} ${devs}`,
    );
  }
  return 0;
}
