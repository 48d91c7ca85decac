/**
 * When the index function queues a compaction: once a safe has `threshold` committed RPs past its
 * last compaction (`compactedUpTo`), and again every `threshold` RPs while none has run, so a
 * queue that lost the first task gets another without flooding it on every RP.
 */
import type { SafeRecord } from '#core/ports/catalog.ts';

export function compactionDue(safe: SafeRecord | undefined, threshold: number): boolean {
  if (!safe?.newestRp || threshold <= 0) return false;
  const since = safe.newestRp - (safe.compactedUpTo ?? 0);
  return since >= threshold && since % threshold === 0;
}
