/**
 * Use case: the replication lag of every safe against its RPO target. Lag is now minus the
 * capture time of the newest committed RP; a safe with no committed RP counts from when the
 * catalog first heard of it. Run on a schedule, so an agent that has gone silent (nothing arrives)
 * still shows a growing lag.
 */
import type { Catalog, SafeRecord } from './ports/catalog.ts';

export interface SafeLag {
  readonly safe: string;
  readonly newestRp: number | null;
  readonly newestRpCreatedAt: string | null;
  readonly lagSeconds: number;
  readonly rpoTargetSeconds: number;
  readonly breached: boolean;
}

export interface LagReport {
  readonly at: string;
  readonly safes: readonly SafeLag[];
  /** Safes whose lag exceeds their RPO target. */
  readonly breaches: number;
  /** The largest lag / target ratio over all safes (0 with no safes). */
  readonly worstRatio: number;
}

export function lagOf(s: SafeRecord, now: Date, defaultTargetSeconds: number): SafeLag {
  const since = s.newestRpCreatedAt ?? s.firstSeenAt;
  const lagSeconds = Math.max(0, Math.round((now.getTime() - Date.parse(since)) / 1000));
  const rpoTargetSeconds = s.rpoTargetSeconds ?? defaultTargetSeconds;
  return {
    safe: s.safe,
    newestRp: s.newestRp ?? null,
    newestRpCreatedAt: s.newestRpCreatedAt ?? null,
    lagSeconds,
    rpoTargetSeconds,
    breached: lagSeconds > rpoTargetSeconds,
  };
}

export async function measureLag(deps: {
  readonly catalog: Catalog;
  readonly defaultRpoSeconds: number;
  now(): Date;
}): Promise<LagReport> {
  const now = deps.now();
  const safes = (await deps.catalog.listSafes()).map((s) => lagOf(s, now, deps.defaultRpoSeconds));
  return {
    at: now.toISOString(),
    safes,
    breaches: safes.filter((s) => s.breached).length,
    worstRatio: safes.reduce((w, s) => Math.max(w, s.lagSeconds / s.rpoTargetSeconds), 0),
  };
}
