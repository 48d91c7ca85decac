/**
 * A lock object, `locks/<id>.json` (docs/FORMAT.md §7a): who holds which kind of lock on a safe and,
 * for writers and readers, the compaction generation their view is built on. Written once with a
 * conditional create and never changed; its holder refreshes it by re-stamping the object (the
 * store's modification time is its age), and deletes it when done.
 */
import { z } from 'zod';
import { LOCK_ID } from '../keys.ts';
import { decodeVersionedJson, v2Version } from './manifest.ts';

export const LOCK_KINDS = ['write', 'compact', 'read'] as const;
export type LockKind = (typeof LOCK_KINDS)[number];

export const lockRecordSchema = z.object({
  format: z.literal('cdp-lock'),
  version: v2Version,
  id: z.string().regex(LOCK_ID),
  /** write: adds RPs (backup, replicate into); compact: compaction and GC; read: restore, verify, replicate from. */
  kind: z.enum(LOCK_KINDS),
  /** What the holder does (backup, replicate, compact, restore, verify). */
  purpose: z.string().max(64),
  /** The agent id, or the function that holds it. */
  owner: z.string().max(256),
  host: z.string().max(256),
  /** The holder's boot (Linux boot_id) and process: a lock of a process that no longer runs on this boot is stale at once. */
  bootId: z.string().max(64),
  /** The holder's pid namespace: containers on one host share the boot id, not their pids. */
  pidNs: z.string().max(64).optional(),
  pid: z.number().int().nonnegative(),
  /** The process's start time (clock ticks since boot), so a reused pid is not taken for the holder. */
  pidStart: z.string().max(32),
  /** The worker thread of the process that holds it (0: the main thread). */
  thread: z.number().int().nonnegative().optional(),
  /** When the holder took it, by its own clock (informational: staleness uses the store's clock). */
  createdAt: z.string(),
  /** write and read locks: the newest generation when the lock was taken (0: none). */
  view: z.number().int().nonnegative(),
});
export type LockRecord = z.infer<typeof lockRecordSchema>;

export function decodeLockRecord(buf: Uint8Array, where: string): LockRecord {
  return decodeVersionedJson(lockRecordSchema, buf, where, 'lock');
}
