/**
 * Readers (restore, verify, replicate's source) register with a read lock where they can: while it
 * is live, garbage collection keeps everything their view may read, whatever the grace period
 * (docs/FORMAT.md §7a). A reader whose credentials cannot write the lock reads without one and is
 * protected by the grace period alone, as the restore function's presigned plans are.
 */
import { hostname } from 'node:os';
import { acquireLock, type HeldLock } from '#core/locks.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';

export async function withReadLock<T>(
  store: ObjectStore,
  safe: string,
  purpose: string,
  fn: () => Promise<T>,
  warn: (msg: string) => void = (m) => console.error(`warning: ${m}`),
): Promise<T> {
  let lock: HeldLock | undefined;
  try {
    lock = await acquireLock(store, safe, {
      kind: 'read',
      purpose,
      owner: `cdp-agent ${purpose} on ${hostname()}`,
    });
  } catch (e) {
    warn(
      `reading ${store.location} without a read lock (${(e as Error).message}): a compaction may delete what this ${purpose} reads once the grace period has passed`,
    );
  }
  try {
    return await fn();
  } finally {
    await lock?.release();
  }
}
