/**
 * Compaction of one safe (docs/FORMAT.md §9a), the same code onsite (`cdp-agent compact`, all
 * stages in one process) and offsite (the compaction function, each stage a task fanned out over
 * SQS), always under the safe's compact lock (core/locks.ts):
 *
 *   begin     commit a complete attempt whose generation is missing; else collect garbage, plan
 *             retention, split every device into block-range shards, write the attempt's journal
 *   liveness  per shard: the frame ranges its retained maps reference      (stages.ts)
 *   select    merge liveness, plan the output segments, or find nothing to do
 *   rewrite   per output segment: copy the live frames byte for byte
 *   maps      per shard: write the shard's part of every map that changed
 *   finish    assemble the generation, list the garbage (orphans included), check the lock, commit
 *             gen/<g>.json with putIfAbsent: the single switch readers see     (finish.ts)
 *
 * A crash before the commit leaves the previous view intact (the attempt's objects are referenced
 * by nothing, and the next generation lists them as garbage); after it the new view is complete.
 */
import { acquireLock } from '../locks.ts';
import type { ObjectStore } from '../ports/object-store.ts';
import { SafeReader } from '../safe-reader.ts';
import { type CompactionResult, type CompactionSettings, cleanUpAttempt } from './attempt.ts';
import { beginCompaction } from './begin.ts';
import { finishCompaction } from './finish.ts';
import { rewriteOutput, selectRewrite, shardLiveness, shardMaps } from './stages.ts';

export {
  allPresent,
  COMPACTION_DEFAULTS,
  CompactionError,
  type CompactionResult,
  type CompactionSettings,
  cleanUpAttempt,
  readJournal,
  readRewritePlan,
} from './attempt.ts';
export { type Begun, beginCompaction } from './begin.ts';
export { finishCompaction } from './finish.ts';
export {
  rewriteOutput,
  rewritesDone,
  selectRewrite,
  shardLiveness,
  shardMaps,
  shardsDone,
} from './stages.ts';

/** The whole compaction in this process, every stage in turn, under the compact lock. */
export async function compactSafe(
  store: ObjectStore,
  safe: string,
  s: CompactionSettings,
): Promise<CompactionResult> {
  const t0 = Date.now();
  const lock = await acquireLock(store, safe, {
    kind: 'compact',
    purpose: 'compact',
    owner: s.owner,
    timing: s.lockTiming,
    log: s.log,
  });
  try {
    const begun = await beginCompaction(store, safe, s, lock);
    if (begun.kind === 'resume') {
      const r = await finishCompaction(store, safe, begun.journal, begun.plan, lock, {
        ...s,
        notes: begun.notes,
      });
      return { ...r, durationMs: Date.now() - t0 };
    }
    const nothing = async (garbageDeleted: number, garbagePending: number, notes: readonly string[]) => ({
      generation: null,
      kept: await new SafeReader(store, safe).listRps(),
      expired: [],
      mapsWritten: 0,
      segmentsRewritten: 0,
      bytesRewritten: 0,
      segmentsWritten: 0,
      shards: 0,
      garbageDeleted,
      garbagePending,
      orphansCondemned: 0,
      notes,
      durationMs: Date.now() - t0,
    });
    if (begun.kind === 'nothing')
      return nothing(begun.garbageDeleted.length, begun.garbagePending, begun.notes);
    const { journal } = begun;
    for (let i = 0; i < journal.shards.length; i++) await shardLiveness(store, safe, journal, i);
    const plan = await selectRewrite(store, safe, journal, s.segmentBytes);
    if (!plan) {
      await cleanUpAttempt(store, safe, journal);
      s.log?.('nothing to compact');
      const gen = await new SafeReader(store, safe).generation();
      return nothing(
        journal.deleted.length,
        gen ? gen.garbage.length - journal.deleted.length : 0,
        begun.notes,
      );
    }
    for (let o = 0; o < plan.outputs.length; o++) {
      const r = await rewriteOutput(store, safe, plan, o, journal.attempt!);
      s.log?.(`wrote segment ${plan.outputs[o]!.id.slice(0, 12)} (${r.frames} frames, ${r.bytes} bytes)`);
    }
    for (let i = 0; i < journal.shards.length; i++) await shardMaps(store, safe, journal, plan, i);
    const result = await finishCompaction(store, safe, journal, plan, lock, { ...s, notes: begun.notes });
    return { ...result, durationMs: Date.now() - t0 };
  } finally {
    await lock.release();
  }
}
