/**
 * `cdp-agent list`: the recovery points of a safe, oldest first. Cheap and honest: every RP's
 * manifest is read and its restore chain walked, and every block map the chain needs must be there
 * with its recorded size (one LIST of the maps, no block data); an RP that fails is listed as
 * DAMAGED with the reason, and the exit code is 8. `verify` reads and checks every block.
 */
import { CdpError } from '#core/errors.ts';
import { generationPrefix, safePrefix } from '#core/keys.ts';
import { SafeReader } from '#core/safe-reader.ts';
import { EXIT } from '../exit-codes.ts';
import { withReadLock } from '../read-lock.ts';
import { openSafeLocation, requireSafe, type SafeLocation } from '../safe-location.ts';

export interface ListOptions {
  readonly safe: string;
  readonly json?: boolean;
}

export interface ListedRp {
  readonly rp: number;
  readonly time?: string;
  readonly kind?: 'full' | 'incremental';
  readonly devices: {
    id: string;
    sizeBytes: number;
    blockSize: number;
    changedBytes: number;
    storedBytes: number;
  }[];
  readonly changedBytes?: number;
  readonly storedBytes?: number;
  /** Block maps a restore of this RP reads (the longest over its devices): 1 is a full map. */
  readonly chain?: number;
  /** Why the RP cannot be restored, when it cannot. */
  readonly damaged?: string;
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
  await requireSafe(loc);
  // a read lock first: no garbage collection takes what this listing's view names while it reads
  return withReadLock(loc.store, loc.safe, 'list', () => listLocked(loc));
}

async function listLocked(loc: SafeLocation): Promise<Listing> {
  const reader = new SafeReader(loc.store, loc.safe);
  // the maps every chain may need, with their sizes: one listing of map/ and one of gen/
  const sizes = new Map<string, number>();
  for (const prefix of [`${safePrefix(loc.safe)}map/`, generationPrefix(loc.safe)])
    for (const o of await loc.store.list(prefix)) sizes.set(o.key, o.size);
  const out: ListedRp[] = [];
  for (const rp of await reader.listRps()) {
    try {
      const m = await reader.manifest(rp);
      let chain = 0;
      for (const d of m.devices) {
        const links = await reader.chain(rp, d.id);
        chain = Math.max(chain, links.length);
        for (const link of links)
          for (const ref of link.refs) {
            const size = sizes.get(ref.key);
            if (size === undefined)
              throw new CdpError('E_SAFE_FORMAT', `block map ${ref.key} of RP ${link.rp} is missing`);
            if (size !== ref.bytes)
              throw new CdpError(
                'E_SAFE_FORMAT',
                `block map ${ref.key} of RP ${link.rp} is ${size} bytes, ${ref.bytes} recorded`,
              );
          }
      }
      out.push({
        rp,
        time: m.createdAt,
        kind: m.parent === null ? 'full' : 'incremental',
        chain,
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
    } catch (e) {
      if (!(e instanceof CdpError)) throw e;
      out.push({ rp, devices: [], damaged: e.message });
    }
  }
  const gen = await reader.generation();
  return {
    recoveryPoints: out,
    generation: gen ? { generation: gen.generation, upTo: gen.upTo, createdAt: gen.createdAt } : null,
  };
}

export async function listCommand(o: ListOptions): Promise<number> {
  const { recoveryPoints: rps, generation } = await listSafe(o.safe);
  const damaged = rps.filter((r) => r.damaged !== undefined);
  const code = damaged.length > 0 ? EXIT.damaged : EXIT.ok;
  if (o.json) {
    console.log(
      JSON.stringify({ safe: o.safe, ok: damaged.length === 0, recoveryPoints: rps, generation }, null, 1),
    );
    return code;
  }
  if (rps.length === 0) {
    console.log(`${o.safe}: no recovery points`);
    return code;
  }
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (generation)
    console.log(
      `compacted: generation ${generation.generation} (${generation.createdAt}) holds RPs up to ${generation.upTo}; merged RPs are gone`,
    );
  console.log('RP  time                      kind         chain  changed      stored       devices');
  for (const r of rps) {
    if (r.damaged !== undefined) {
      console.log(`${String(r.rp).padEnd(3)} DAMAGED: ${r.damaged}`);
      continue;
    }
    const devs = r.devices
      .map((d) => `${d.id} (${mib(d.sizeBytes)}, ${d.blockSize / 1024} KiB blocks)`)
      .join(', ');
    console.log(
      `${String(r.rp).padEnd(3)} ${r.time!.padEnd(25)} ${r.kind!.padEnd(12)} ${String(r.chain).padEnd(6)} ${mib(r.changedBytes!).padEnd(12)} ${mib(r.storedBytes!).padEnd(12)} ${devs}`,
    );
  }
  if (damaged.length > 0)
    console.log(`${damaged.length} recovery point(s) damaged: run \`cdp-agent verify\` for every block`);
  return code;
}
