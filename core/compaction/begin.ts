/**
 * The first stage of a compaction, under the compact lock: commit a complete attempt whose
 * generation is missing (named, nothing deleted on its account); else collect due garbage, remove
 * abandoned temporary files, plan retention, split every device into shards and write the journal
 * of a fresh attempt.
 */
import { randomBytes } from 'node:crypto';
import { NotFoundError } from '../errors.ts';
import { FORMAT_VERSION } from '../format/constants.ts';
import type { Journal, RewritePlan } from '../format/generation.ts';
import { encodeJson } from '../format/manifest.ts';
import { journalKey } from '../keys.ts';
import type { HeldLock } from '../locks.ts';
import type { ObjectStore } from '../ports/object-store.ts';
import { SafeReader } from '../safe-reader.ts';
import {
  COMPACTION_DEFAULTS,
  CompactionError,
  type CompactionSettings,
  findCompleteAttempt,
} from './attempt.ts';
import { collectGarbage } from './collect-garbage.ts';
import { retentionOf, shardsOf } from './plan.ts';

export type Begun =
  | {
      readonly kind: 'nothing';
      readonly garbageDeleted: readonly string[];
      readonly garbagePending: number;
      readonly notes: readonly string[];
    }
  | {
      readonly kind: 'started';
      readonly generation: number;
      readonly journal: Journal;
      readonly garbageDeleted: readonly string[];
      readonly notes: readonly string[];
    }
  | {
      /** A complete attempt whose generation is missing: only its commit is left to do. */
      readonly kind: 'resume';
      readonly generation: number;
      readonly journal: Journal;
      readonly plan: RewritePlan;
      readonly notes: readonly string[];
    };

export async function beginCompaction(
  store: ObjectStore,
  safe: string,
  s: CompactionSettings,
  lock: HeldLock,
): Promise<Begun> {
  const now = s.now ?? (() => new Date());
  const log = s.log ?? (() => undefined);
  const reader = new SafeReader(store, safe);
  if (!(await reader.config()))
    throw new NotFoundError(`safe ${safe} (no safe.json at ${store.location})`, { safe });
  const old = await reader.generation();
  const g = (old?.generation ?? 0) + 1;
  const others = await lock.others();
  const complete = await findCompleteAttempt(store, safe, g, old?.generation ?? null, others);
  if (complete) {
    const note =
      `generation ${g} is missing but attempt ${complete.journal.attempt} finished its work ` +
      `(its gen/${String(g).padStart(10, '0')}.json was lost, or it crashed just before committing): committing it from its work objects`;
    log(note);
    return { kind: 'resume', generation: g, journal: complete.journal, plan: complete.plan, notes: [note] };
  }
  const notes: string[] = [];
  const gc = await collectGarbage(reader, old, now(), s.graceMs ?? COMPACTION_DEFAULTS.graceMs, lock);
  if (gc.deleted.length > 0) log(`deleted ${gc.deleted.length} objects past their grace period`);
  if (gc.held.length > 0) {
    const note = `${gc.held.length} objects past their grace period stay for now: ${gc.held[0]}`;
    notes.push(note);
    log(note);
  }
  const removed = await store.cleanTemporaries(new Date(now().getTime() - COMPACTION_DEFAULTS.temporariesMs));
  if (removed > 0) log(`removed ${removed} temporary files or unfinished uploads of writers that are gone`);
  const view = await retentionOf(reader, s.policy);
  if (!view) return { kind: 'nothing', garbageDeleted: gc.deleted, garbagePending: gc.kept, notes };
  const attempt = randomBytes(8).toString('hex');
  const journal: Journal = {
    format: 'cdp-journal',
    version: FORMAT_VERSION,
    generation: g,
    attempt,
    lock: lock.id,
    previous: old?.generation ?? null,
    startedAt: now().toISOString(),
    owner: s.owner,
    upTo: view.upTo,
    policy: s.policy,
    maxDeltas: s.maxDeltas ?? COMPACTION_DEFAULTS.maxDeltas,
    rewriteBelow: s.rewriteBelow ?? COMPACTION_DEFAULTS.rewriteBelow,
    deleted: gc.deleted.slice(),
    shards: shardsOf(view, s.shardBlocks ?? COMPACTION_DEFAULTS.shardBlocks),
    kept: view.kept.map((k) => ({ ...k })),
    expired: view.expired.slice(),
  };
  if (!(await store.putIfAbsent(journalKey(safe, g, attempt), encodeJson(journal))))
    throw new CompactionError('E_CONFLICT', `attempt ${attempt} at generation ${g} exists already`);
  return { kind: 'started', generation: g, journal, garbageDeleted: gc.deleted, notes };
}
