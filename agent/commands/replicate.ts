/**
 * `cdp-agent replicate --from <safe> --to <safe> [--to …] [--select a,b] [--bwlimit RATE]`:
 * copies the committed RPs each destination lacks (replicate-safe.ts). With --select, --from and
 * --to are folders (or s3:// prefixes) holding safes, and the named safes are replicated.
 */
import { CdpError } from '#core/errors.ts';
import type { SafeKeys } from '#core/format/crypto.ts';
import type { RestorePlan } from '#core/restore-plan.ts';
import { SafeReader } from '#core/safe-reader.ts';
import { parseRate, RateLimiter } from '../backup/rate-limiter.ts';
import { EXIT } from '../exit-codes.ts';
import { progressBar } from '../progress.ts';
import { type ReplicateResult, replicateSafe } from '../replicate/replicate-safe.ts';
import { openSafeLocation } from '../safe-location.ts';
import { keysFrom } from './restore.ts';

export interface ReplicateCliOptions {
  readonly from: string;
  readonly to: string[];
  readonly select?: string;
  readonly bwlimit?: string;
  readonly encryptKeyFile?: string;
  readonly json?: boolean;
}

const join = (root: string, name: string): string => `${root.replace(/\/+$/, '')}/${name}`;

/** The (from, to) safe pairs a command line names. */
export function replicationPairs(
  o: Pick<ReplicateCliOptions, 'from' | 'to' | 'select'>,
): { from: string; to: string }[] {
  if (o.to.length === 0) throw new CdpError('E_USAGE', 'give at least one --to');
  const names = o.select
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (!names) return o.to.map((to) => ({ from: o.from, to }));
  return names.flatMap((n) => o.to.map((to) => ({ from: join(o.from, n), to: join(to, n) })));
}

export async function replicatePair(
  from: string,
  to: string,
  limiter: RateLimiter | undefined,
  onProgress?: (done: number, total: number) => void,
  keyFile?: string,
): Promise<ReplicateResult> {
  const src = await openSafeLocation(from);
  const dst = await openSafeLocation(to);
  if (src.safe !== dst.safe) {
    throw new CdpError(
      'E_USAGE',
      `--from ${from} is safe ${src.safe} but --to ${to} is safe ${dst.safe}: the ids must match`,
    );
  }
  let keys: SafeKeys | undefined;
  if (keyFile) {
    const cfg = await new SafeReader(src.store, src.safe).config();
    if (cfg?.encryption)
      keys = keysFrom(keyFile)({
        safe: src.safe,
        encryption: { salt: cfg.encryption.salt, keyCheck: cfg.encryption.keyCheck },
      } as RestorePlan);
  }
  return replicateSafe(src.store, dst.store, src.safe, { limiter, onProgress, keys });
}

export async function replicateCommand(o: ReplicateCliOptions): Promise<number> {
  const limiter = o.bwlimit ? new RateLimiter(parseRate(o.bwlimit)) : undefined;
  const bar = progressBar(!o.json);
  const results: (ReplicateResult | { from: string; to: string; error: string })[] = [];
  for (const p of replicationPairs(o)) {
    try {
      const r = await replicatePair(
        p.from,
        p.to,
        limiter,
        (done, total) => bar.update(`${p.to}`, done, total),
        o.encryptKeyFile,
      );
      results.push(r);
      if (!o.json) {
        bar.stop();
        console.log(
          `${p.from} → ${p.to}: ${r.copiedRps.length ? `copied RP ${r.copiedRps.join(', ')}` : 'up to date'} ` +
            `(${(r.copiedBytes / 2 ** 20).toFixed(1)} MiB in ${(r.durationMs / 1000).toFixed(1)} s${r.skippedObjects ? `, ${r.skippedObjects} object(s) already there` : ''})`,
        );
      }
    } catch (e) {
      if (!(e instanceof Error)) throw e;
      const code = e instanceof CdpError ? e.code : undefined;
      results.push({ from: p.from, to: p.to, error: e.message, ...(code ? { code } : {}) });
      if (!o.json) console.error(`${p.from} → ${p.to}: ${e.message}`);
    }
  }
  bar.stop();
  if (o.json) console.log(JSON.stringify({ results }, null, 1));
  const failed = results.filter((r) => 'error' in r) as { code?: string }[];
  if (failed.length === 0) return EXIT.ok;
  // damage found outranks other failures: a copy was refused because the source is damaged
  if (failed.some((f) => f.code === 'E_DAMAGED')) return EXIT.damaged;
  if (failed.every((f) => f.code === 'E_LOCK_BUSY' || f.code === 'E_LOCK_LOST')) return EXIT.conflict;
  return EXIT.failure;
}
