import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { planRetention, type RpInfo } from '#core/retention.ts';

/** 30 days of hourly RPs from 2026-10-01T00:30Z. */
const month: RpInfo[] = Array.from({ length: 30 * 24 }, (_, i) => ({
  rp: i + 1,
  createdAt: new Date(Date.UTC(2026, 9, 1, 0, 30) + i * 3_600_000).toISOString(),
}));

describe('retention planning (GFS)', () => {
  it('keeps 24 hourly, 7 daily, 4 weekly of 30 days of hourly RPs', () => {
    const p = planRetention(month, { last: 0, hourly: 24, daily: 7, weekly: 4, monthly: 0 });
    const kept = p.keep.map((k) => k.rp);
    // the newest 24 hours, then the newest RP of each of the 6 days before, then of older weeks
    expect(kept.filter((rp) => rp > 720 - 24)).toHaveLength(24);
    expect(p.keep.filter((k) => k.reasons.includes('daily'))).toHaveLength(7);
    expect(p.keep.filter((k) => k.reasons.includes('weekly'))).toHaveLength(4);
    expect(kept.length).toBeLessThanOrEqual(24 + 7 + 4);
    expect(kept.length + p.expire.length).toBe(720);
    expect(kept.at(-1)).toBe(720);
  });

  it('always keeps the newest and every locked RP', () => {
    const rps = month.slice(0, 50).map((r) => (r.rp === 3 ? { ...r, locked: true } : r));
    const p = planRetention(rps, { last: 0, hourly: 0, daily: 0, weekly: 0, monthly: 0 });
    expect(p.keep).toEqual([
      { rp: 3, reasons: ['locked'] },
      { rp: 50, reasons: ['newest'] },
    ]);
  });

  it('never keeps more than the policy allows, and partitions the RPs (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 90 * 24 * 60 }), { minLength: 1, maxLength: 200 }),
        fc.record({
          last: fc.nat(10),
          hourly: fc.nat(30),
          daily: fc.nat(10),
          weekly: fc.nat(6),
          monthly: fc.nat(4),
        }),
        (minutes, policy) => {
          const sorted = [...new Set(minutes)].sort((a, b) => a - b);
          const rps = sorted.map((m, i) => ({
            rp: i + 1,
            createdAt: new Date(Date.UTC(2026, 0, 1) + m * 60_000).toISOString(),
          }));
          const p = planRetention(rps, policy);
          const kept = p.keep.map((k) => k.rp);
          expect([...kept, ...p.expire].sort((a, b) => a - b)).toEqual(rps.map((r) => r.rp));
          expect(kept).toContain(rps.length);
          const cap =
            Math.max(1, policy.last) + policy.hourly + policy.daily + policy.weekly + policy.monthly;
          expect(kept.length).toBeLessThanOrEqual(cap);
        },
      ),
    );
  });

  it('refuses a negative or fractional count', () => {
    expect(() => planRetention(month, { last: -1, hourly: 0, daily: 0, weekly: 0, monthly: 0 })).toThrow(
      /last must be/,
    );
  });
});
