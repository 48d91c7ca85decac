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
  /** Block maps a restore of this RP reads (the longest over its devices): 1 is a full map. */
  readonly chain: number;
}

export interface Listing {
  readonly recoveryPoints: ListedRp[];
  /** The compaction generation in force, if the safe was compacted. */
  readonly generation: {
    readonly generation: number;
    readonly upTo: number;
    readonly createdAt: string;
  } | null;
}

export async function listSafe(safeArg: string): Promise<Listing> {
  const loc = await openSafeLocation(safeArg);
  const reader = new SafeReader(loc.store, loc.safe);
  const out: ListedRp[] = [];
  for (const rp of await reader.listRps()) {
    const m = await reader.manifest(rp);
    const chains = await Promise.all(m.devices.map(async (d) => (await reader.chain(rp, d.id)).length));
    out.push({
      rp,
      time: m.createdAt,
      kind: m.parent === null ? 'full' : 'incremental',
      chain: Math.max(...chains),
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
  const gen = await reader.generation();
  return {
    recoveryPoints: out,
    generation: gen ? { generation: gen.generation, upTo: gen.upTo, createdAt: gen.createdAt } : null,
  };
}

export async function listCommand(o: ListOptions): Promise<number> {
  const { recoveryPoints: rps, generation } = await listSafe(o.safe);
  if (o.json) {
    console.log(JSON.stringify({ safe: o.safe, recoveryPoints: rps, generation }, null, 1));
    return 0;
  }
  if (rps.length === 0) {
    console.log(`${o.safe}: no recovery points`);
    return 0;
  }
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (generation)
    console.log(
      `compacted: generation ${generation.generation} (${generation.createdAt}) holds RPs up to ${generation.upTo}; merged RPs are gone`,
    );
  console.log('RP  time                      kind         chain  changed      stored       devices');
  for (const r of rps) {
    const devs = r.devices
      .map((d) => `${d.id} (${mib(d.sizeBytes)}, ${d.blockSize / 1024} KiB blocks)`)
      .join(', ');
    console.log(
      `${String(r.rp).padEnd(3)} ${r.time.padEnd(25)} ${r.kind.padEnd(12)} ${String(r.chain).padEnd(6)} ${mib(r.changedBytes).padEnd(12)} ${mib(r.storedBytes).padEnd(12)} ${devs}`,
    );
  }
  return 0;
}
