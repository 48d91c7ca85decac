/**
 * `cdp-agent status --config <file>`: per safe and destination, the newest RP, the lag (now minus
 * the capture time of the newest RP the destination holds), the RPs and bytes still to copy, and
 * the daemon's last error (from its status file).
 */
import { existsSync, readFileSync } from 'node:fs';
import { SafeReader } from '#core/safe-reader.ts';
import { pendingOf } from '../replicate/replicate-safe.ts';
import { loadRunConfig } from '../run/config.ts';
import type { DaemonStatus } from '../run/daemon.ts';
import { openSafeLocation } from '../safe-location.ts';

export interface PointStatus {
  readonly location: string;
  readonly newestRp: number | null;
  readonly newestRpAt: string | null;
  readonly lagSeconds: number | null;
  readonly pendingRps?: number;
  readonly pendingBytes?: number;
  readonly lastError?: string;
}

async function newestOf(reader: SafeReader): Promise<{ rp: number | null; at: string | null }> {
  const rps = await reader.listRps();
  const rp = rps.at(-1) ?? null;
  return { rp, at: rp === null ? null : (await reader.manifest(rp)).createdAt };
}

const lag = (at: string | null): number | null =>
  at === null ? null : Math.max(0, Math.round((Date.now() - Date.parse(at)) / 1000));

export async function statusCommand(o: { config: string; json?: boolean }): Promise<number> {
  const cfg = loadRunConfig(o.config);
  const daemon: DaemonStatus | undefined =
    cfg.statusFile && existsSync(cfg.statusFile)
      ? JSON.parse(readFileSync(cfg.statusFile, 'utf8'))
      : undefined;
  const out: { safe: string; primary: PointStatus; destinations: PointStatus[] }[] = [];
  for (const s of cfg.safes) {
    const src = await openSafeLocation(s.safe);
    const reader = new SafeReader(src.store, src.safe);
    const newest = await newestOf(reader).catch(() => ({ rp: null, at: null }));
    const ds = daemon?.safes.find((x) => x.safe === s.safe);
    const destinations: PointStatus[] = [];
    for (const to of s.replicateTo) {
      const dst = await openSafeLocation(to);
      // one listing of the destination gives both what it holds and what it lacks
      const pending = await pendingOf(reader, dst.store).catch(() => undefined);
      const thereRp = pending?.newestDestination ?? null;
      const thereAt =
        thereRp === null ? null : (await new SafeReader(dst.store, dst.safe).manifest(thereRp)).createdAt;
      destinations.push({
        location: to,
        newestRp: thereRp,
        newestRpAt: thereAt,
        lagSeconds: lag(thereAt),
        pendingRps: pending?.rps.length,
        pendingBytes: pending?.bytes,
        lastError: ds?.destinations[to]?.lastError,
      });
    }
    out.push({
      safe: s.safe,
      primary: {
        location: s.safe,
        newestRp: newest.rp,
        newestRpAt: newest.at,
        lagSeconds: lag(newest.at),
        lastError: ds?.lastBackupError,
      },
      destinations,
    });
  }
  if (o.json) {
    console.log(
      JSON.stringify(
        { daemon: daemon ? { pid: daemon.pid, updatedAt: daemon.updatedAt } : null, safes: out },
        null,
        1,
      ),
    );
    return 0;
  }
  const fmt = (p: PointStatus): string =>
    `${p.location}: newest RP ${p.newestRp ?? '-'}${p.newestRpAt ? ` (${p.newestRpAt}, lag ${p.lagSeconds} s)` : ''}` +
    (p.pendingRps !== undefined
      ? `, pending ${p.pendingRps} RP(s) / ${((p.pendingBytes ?? 0) / 2 ** 20).toFixed(1)} MiB`
      : '') +
    (p.lastError ? `, last error: ${p.lastError}` : '');
  for (const s of out) {
    console.log(`primary ${fmt(s.primary)}`);
    for (const d of s.destinations) console.log(`  → ${fmt(d)}`);
  }
  if (daemon) console.log(`daemon pid ${daemon.pid}, status updated ${daemon.updatedAt}`);
  return 0;
}
