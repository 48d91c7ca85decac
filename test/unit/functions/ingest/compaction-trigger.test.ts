import { describe, expect, it } from 'vitest';
import { compactionDue } from '../../../../functions/ingest/compaction-trigger.ts';

const safe = (newestRp: number, compactedUpTo?: number) => ({
  safe: 's',
  newestRp,
  compactedUpTo,
  committedRps: newestRp,
  storedBytes: 0,
  quarantined: 0,
  firstSeenAt: '2026-11-01T00:00:00Z',
});

describe('compactionDue', () => {
  it('fires when the chain since the last compaction reaches the threshold, and every threshold RPs after', () => {
    expect([23, 24, 25, 47, 48].map((rp) => compactionDue(safe(rp), 24))).toEqual([
      false,
      true,
      false,
      false,
      true,
    ]);
    expect(compactionDue(safe(48, 24), 24)).toBe(true);
    expect(compactionDue(safe(40, 24), 24)).toBe(false);
  });
  it('never fires without a safe, an RP, or a threshold', () => {
    expect(compactionDue(undefined, 24)).toBe(false);
    expect(compactionDue(safe(24), 0)).toBe(false);
  });
});
