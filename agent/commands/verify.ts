/**
 * `cdp-agent verify`: proves RPs restorable (every frame read and checked), writing nothing but a
 * record of the damage it finds (damage/<segment>/<run>.json, so the next backup stores those
 * blocks again from the device). Every RP and device is checked whatever happened to the others;
 * any that is not restorable is named, in text and JSON, and the exit code is 8.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { recordDamage } from '#core/damage.ts';
import { CdpError } from '#core/errors.ts';
import type { DamageRecord } from '#core/format/damage.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import { parseRpSelector, selectRp } from '#core/rp-selector.ts';
import { SafeReader } from '#core/safe-reader.ts';
import { EXIT } from '../exit-codes.ts';
import { withReadLock } from '../read-lock.ts';
import { localPages } from '../restore/plans.ts';
import type { DamagedRange } from '../restore/run-restore.ts';
import { type VerifiedDevice, verifyPages } from '../restore/run-verify.ts';
import { countingStore, StoreSource } from '../restore/segment-source.ts';
import { openSafeLocation, requireSafe } from '../safe-location.ts';
import { keysFrom } from './restore.ts';

export interface VerifyOptions {
  readonly safe: string;
  readonly rp?: string;
  readonly device?: string;
  readonly encryptKeyFile?: string;
  readonly json?: boolean;
}

type Result = VerifiedDevice | { rp: number; device: string; error: string };

/** Errors that are about the command, not the safe's content: they end the command. */
function fatal(e: unknown): boolean {
  return !(e instanceof CdpError) || e.code === 'E_USAGE' || e.code === 'E_SAFE_ACCESS';
}

/** One damage record per damaged segment; a store that refuses the write (read-only credentials) is said so. */
async function recordDamageOf(
  store: ObjectStore,
  safe: string,
  results: readonly Result[],
  warn: (m: string) => void,
): Promise<number> {
  const bySegment = new Map<string, { rp: number; device: string; frames: DamageRecord['frames'] }>();
  for (const r of results) {
    if ('error' in r) continue;
    for (const d of r.damaged) {
      if (d.frame === undefined) continue;
      const rec = bySegment.get(d.segment) ?? { rp: r.rp, device: r.device, frames: [] };
      rec.frames.push({ first: d.frame, count: d.count, reason: d.reason.slice(0, 1000) });
      bySegment.set(d.segment, rec);
    }
  }
  const run = randomBytes(8).toString('hex');
  let written = 0;
  for (const [segment, rec] of bySegment) {
    try {
      const ok = await recordDamage(store, safe, run, {
        segment,
        frames: rec.frames,
        foundAt: new Date().toISOString(),
        foundBy: `cdp-agent verify on ${hostname()}`,
        rp: rec.rp,
        device: rec.device,
      });
      if (ok) written++;
    } catch (e) {
      warn(`could not record the damage of segment ${segment} in the safe: ${(e as Error).message}`);
    }
  }
  return written;
}

export async function verifyCommand(o: VerifyOptions): Promise<number> {
  const loc = await openSafeLocation(o.safe);
  await requireSafe(loc);
  const counter = { bytes: 0 };
  const reader = new SafeReader(countingStore(loc.store, counter), loc.safe);
  const warn = (m: string): void => console.error(`warning: ${m}`);
  const t0 = performance.now();
  const results: Result[] = [];
  const problems: string[] = [];
  const keys = keysFrom(o.encryptKeyFile);
  await withReadLock(loc.store, loc.safe, 'verify', async () => {
    if (!(await reader.config().catch(() => undefined)))
      problems.push('safe.json is missing or unreadable: restore it from a replica');
    const rps = o.rp ? [await selectRp(reader, parseRpSelector(o.rp))] : await reader.listRps();
    for (const rp of rps) {
      let devices: string[];
      try {
        devices = (await reader.manifest(rp)).devices
          .map((d) => d.id)
          .filter((d) => !o.device || d === o.device);
      } catch (e) {
        if (fatal(e)) throw e;
        results.push({ rp, device: o.device ?? '*', error: (e as Error).message });
        continue;
      }
      for (const device of devices) {
        try {
          results.push(
            await verifyPages(localPages(reader, rp, device), new StoreSource(reader, counter), keys),
          );
        } catch (e) {
          if (fatal(e)) throw e;
          results.push({ rp, device, error: (e as Error).message });
        }
      }
    }
  });
  if (o.device && results.length === 0)
    throw new CdpError(
      'E_USAGE',
      `no ${o.rp ? `RP ${o.rp}` : 'recovery point'} of ${o.safe} holds a device ${o.device}`,
      {
        device: o.device,
      },
    );
  const recorded = await recordDamageOf(loc.store, loc.safe, results, warn);
  const bad = results.filter((r) => 'error' in r || r.damaged.length > 0);
  const ok = bad.length === 0 && problems.length === 0;
  const secs = (performance.now() - t0) / 1000;
  if (o.json) {
    console.log(
      JSON.stringify(
        {
          safe: o.safe,
          ok,
          readBytes: counter.bytes,
          seconds: secs,
          problems,
          damageRecorded: recorded,
          results,
        },
        null,
        1,
      ),
    );
  } else {
    for (const p of problems) console.log(`safe: ${p}`);
    for (const r of results) {
      if ('error' in r) console.log(`RP ${r.rp} ${r.device}: NOT RESTORABLE: ${r.error}`);
      else if (r.damaged.length === 0)
        console.log(`RP ${r.rp} ${r.device}: ok (${r.dataBlocks} stored blocks checked)`);
      else {
        console.log(`RP ${r.rp} ${r.device}: DAMAGED`);
        for (const d of r.damaged as DamagedRange[])
          console.log(`  blocks ${d.first}..${d.first + d.count - 1} in segment ${d.segment}: ${d.reason}`);
      }
    }
    console.log(
      `${ok ? 'all restorable' : `${bad.length} device(s) not restorable`}; read ${(counter.bytes / 2 ** 20).toFixed(1)} MiB in ${secs.toFixed(1)} s` +
        (recorded > 0
          ? `; damage recorded for ${recorded} segment(s): the next backup stores those blocks again`
          : ''),
    );
  }
  return ok ? EXIT.ok : EXIT.damaged;
}
