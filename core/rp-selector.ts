/** Picks the RP a restore means: a number, `latest`, or a time (the newest RP at or before it). */
import { CdpError, NotFoundError } from './errors.ts';
import type { SafeReader } from './safe-reader.ts';

export type RpSelector = number | 'latest' | string;

export function parseRpSelector(s: string): RpSelector {
  if (/^[0-9]+$/.test(s)) return Number(s);
  if (s === 'latest') return s;
  if (!Number.isNaN(Date.parse(s))) return new Date(s).toISOString();
  throw new CdpError('E_USAGE', `--rp ${s}: give an RP number, latest, or a time (ISO-8601)`);
}

/** Resolves a selector against a safe's committed RPs (reads manifests for a time). */
export async function selectRp(reader: SafeReader, sel: RpSelector): Promise<number> {
  const rps = await reader.listRps();
  if (rps.length === 0)
    throw new NotFoundError(`recovery points in safe ${reader.safe}`, { safe: reader.safe });
  if (sel === 'latest') return rps[rps.length - 1]!;
  if (typeof sel === 'number') {
    if (!rps.includes(sel)) throw new NotFoundError(`recovery point ${sel}`, { safe: reader.safe, rp: sel });
    return sel;
  }
  for (let i = rps.length - 1; i >= 0; i--) {
    const m = await reader.manifest(rps[i]!);
    if (Date.parse(m.createdAt) <= Date.parse(sel)) return rps[i]!;
  }
  throw new NotFoundError(`a recovery point at or before ${sel}`, { safe: reader.safe });
}
