/** `cdp-agent verify`: proves RPs restorable (every frame read and checked), writing nothing. */

import { CdpError } from '#core/errors.ts';
import { parseRpSelector, selectRp } from '#core/rp-selector.ts';
import { SafeFormatError, SafeReader } from '#core/safe-reader.ts';
import { EXIT } from '../exit-codes.ts';
import { localPages } from '../restore/plans.ts';
import { type VerifiedDevice, verifyPages } from '../restore/run-verify.ts';
import { countingStore, StoreSource } from '../restore/segment-source.ts';
import { openSafeLocation } from '../safe-location.ts';
import { keysFrom } from './restore.ts';

export interface VerifyOptions {
  readonly safe: string;
  readonly rp?: string;
  readonly device?: string;
  readonly encryptKeyFile?: string;
  readonly json?: boolean;
}

export async function verifyCommand(o: VerifyOptions): Promise<number> {
  const loc = await openSafeLocation(o.safe);
  const counter = { bytes: 0 };
  const reader = new SafeReader(countingStore(loc.store, counter), loc.safe);
  const rps = o.rp ? [await selectRp(reader, parseRpSelector(o.rp))] : await reader.listRps();
  const t0 = performance.now();
  const results: (VerifiedDevice | { rp: number; device: string; error: string })[] = [];
  for (const rp of rps) {
    const m = await reader.manifest(rp);
    for (const d of m.devices.filter((x) => !o.device || x.id === o.device)) {
      try {
        results.push(
          await verifyPages(
            localPages(reader, rp, d.id),
            new StoreSource(reader, counter),
            keysFrom(o.encryptKeyFile),
          ),
        );
      } catch (e) {
        if (!(e instanceof SafeFormatError) && !(e instanceof CdpError && e.code === 'E_NOT_FOUND')) throw e;
        results.push({ rp, device: d.id, error: e.message });
      }
    }
  }
  const bad = results.filter((r) => 'error' in r || r.damaged.length > 0);
  const secs = (performance.now() - t0) / 1000;
  if (o.json) {
    console.log(
      JSON.stringify(
        { safe: o.safe, ok: bad.length === 0, readBytes: counter.bytes, seconds: secs, results },
        null,
        1,
      ),
    );
  } else {
    for (const r of results) {
      if ('error' in r) console.log(`RP ${r.rp} ${r.device}: NOT RESTORABLE: ${r.error}`);
      else if (r.damaged.length === 0)
        console.log(`RP ${r.rp} ${r.device}: ok (${r.dataBlocks} stored blocks checked)`);
      else {
        console.log(`RP ${r.rp} ${r.device}: DAMAGED`);
        for (const d of r.damaged)
          console.log(`  blocks ${d.first}..${d.first + d.count - 1} in segment ${d.segment}: ${d.reason}`);
      }
    }
    console.log(
      `${bad.length === 0 ? 'all restorable' : `${bad.length} device(s) not restorable`}; read ${(counter.bytes / 2 ** 20).toFixed(1)} MiB in ${secs.toFixed(1)} s`,
    );
  }
  return bad.length === 0 ? EXIT.ok : EXIT.damaged;
}
