/**
 * Retention planning (docs/FORMAT.md §9a.4): which recovery points a
 * policy keeps. Keep the newest `last` RPs, plus the newest RP of each of the newest `hourly`
 * hours, `daily` days, `weekly` ISO weeks and `monthly` months (GFS, UTC), plus every locked RP.
 * The newest RP is always kept. Pure: the caller merges the expired RPs (blocks still needed by a
 * later retained RP survive) in the compaction step.
 */
export interface RetentionPolicy {
  readonly last: number;
  readonly hourly: number;
  readonly daily: number;
  readonly weekly: number;
  readonly monthly: number;
}

export interface RpInfo {
  readonly rp: number;
  /** Capture time, ISO-8601. */
  readonly createdAt: string;
  readonly locked?: boolean;
}

export interface RetentionPlan {
  /** Kept RPs, oldest first, each with why. */
  readonly keep: readonly { readonly rp: number; readonly reasons: readonly string[] }[];
  /** RPs the policy lets go, oldest first. */
  readonly expire: readonly number[];
}

function isoWeek(d: Date): string {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const day = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - day);
  const year = t.getUTCFullYear();
  const week = Math.ceil(((t.getTime() - Date.UTC(year, 0, 1)) / 86_400_000 + 1) / 7);
  return `${year}-W${String(week).padStart(2, '0')}`;
}

const buckets: Record<'hourly' | 'daily' | 'weekly' | 'monthly', (d: Date) => string> = {
  hourly: (d) => d.toISOString().slice(0, 13),
  daily: (d) => d.toISOString().slice(0, 10),
  weekly: isoWeek,
  monthly: (d) => d.toISOString().slice(0, 7),
};

export function planRetention(rps: readonly RpInfo[], policy: RetentionPolicy): RetentionPlan {
  for (const k of ['last', 'hourly', 'daily', 'weekly', 'monthly'] as const) {
    const v = policy[k];
    if (!Number.isInteger(v) || v < 0) throw new Error(`retention ${k} must be a whole number ≥ 0, got ${v}`);
  }
  const newestFirst = [...rps].sort((a, b) => b.rp - a.rp);
  const reasons = new Map<number, string[]>();
  const add = (rp: number, why: string): void => {
    const list = reasons.get(rp) ?? [];
    list.push(why);
    reasons.set(rp, list);
  };
  for (const [i, r] of newestFirst.slice(0, Math.max(1, policy.last)).entries()) {
    add(r.rp, i < policy.last ? 'last' : 'newest');
  }
  for (const r of newestFirst) if (r.locked) add(r.rp, 'locked');
  for (const kind of ['hourly', 'daily', 'weekly', 'monthly'] as const) {
    const n = policy[kind];
    const seen = new Set<string>();
    for (const r of newestFirst) {
      if (seen.size >= n) break;
      const b = buckets[kind](new Date(r.createdAt));
      if (seen.has(b)) continue;
      seen.add(b);
      add(r.rp, kind);
    }
  }
  const oldestFirst = [...newestFirst].reverse();
  return {
    keep: oldestFirst
      .filter((r) => reasons.has(r.rp))
      .map((r) => ({ rp: r.rp, reasons: reasons.get(r.rp)! })),
    expire: oldestFirst.filter((r) => !reasons.has(r.rp)).map((r) => r.rp),
  };
}
