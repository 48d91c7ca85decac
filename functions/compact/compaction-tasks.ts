/**
 * Use case: the offsite compaction of a safe, as tasks on the compaction queue (one stage of
 * core/compaction each; every task is idempotent, and the task that sees a stage complete starts
 * the next):
 *
 *   compact  {safe}                         take the safe's compact lock (the same lock
 *                                           `cdp-agent compact` takes), begin (GC, retention,
 *                                           shards, journal), fan out one liveness task per shard
 *   liveness {safe, gen, attempt, shard}    the frame ranges the shard's retained maps reference
 *   select   {safe, gen, attempt}           merge liveness, choose the output segments (or stop:
 *                                           nothing to do), fan out one rewrite task per output
 *   rewrite  {safe, gen, attempt, output}   write one dense segment
 *   maps     {safe, gen, attempt, shard}    write the shard's part of every changed map
 *   finish   {safe, gen, attempt}           commit the generation, record it in the catalog
 *                                           (expired RPs leave the committed set), release the lock
 *
 * A stage with few units runs in place instead of fanning out (`inline`). The lock lives in the
 * safe (core/locks.ts) and outlives a task: every task takes it up again (resumeLock) and leaves it
 * held; a task that finds it lost (another compactor took it for stale) stops. A job whose tasks
 * all died leaves a lock that goes stale and an attempt whose objects the next generation lists
 * as garbage.
 */
import {
  beginCompaction,
  CompactionError,
  type CompactionResult,
  cleanUpAttempt,
  finishCompaction,
  readJournal,
  readRewritePlan,
  rewriteOutput,
  rewritesDone,
  selectRewrite,
  shardLiveness,
  shardMaps,
  shardsDone,
} from '#core/compaction/compact.ts';
import { readPolicy } from '#core/compaction/policy.ts';
import { NotFoundError } from '#core/errors.ts';
import type { Generation, Journal, StoredPolicy } from '#core/format/generation.ts';
import { lockKey, parseKey } from '#core/keys.ts';
import {
  acquireLock,
  type HeldLock,
  LOCK_TIMING,
  LockBusyError,
  LockLostError,
  type LockTiming,
  newestGeneration,
  resumeLock,
} from '#core/locks.ts';
import type { Catalog } from '#core/ports/catalog.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import { SafeReader } from '#core/safe-reader.ts';

export type CompactionTask =
  | { readonly action: 'compact'; readonly safe: string }
  | {
      readonly action: 'liveness' | 'maps';
      readonly safe: string;
      readonly generation: number;
      readonly attempt: string;
      readonly shard: number;
    }
  | {
      readonly action: 'select' | 'finish';
      readonly safe: string;
      readonly generation: number;
      readonly attempt: string;
    }
  | {
      readonly action: 'rewrite';
      readonly safe: string;
      readonly generation: number;
      readonly attempt: string;
      readonly output: number;
    };

export interface CompactionDeps {
  readonly catalog: Catalog;
  storeFor(safe: string): ObjectStore;
  send(tasks: readonly CompactionTask[]): Promise<void>;
  readonly defaultPolicy: StoredPolicy;
  readonly graceMs: number;
  readonly maxDeltas: number;
  readonly segmentBytes?: number;
  readonly shardBlocks?: number;
  /** A stage with at most this many units (shards, output segments) runs in place. */
  readonly inline: number;
  /** Who holds the lock (the function's name). */
  readonly owner: string;
  readonly lockTiming?: LockTiming;
  now(): Date;
  log?(msg: string): void;
}

export type TaskOutcome =
  | { readonly outcome: 'busy'; readonly safe: string; readonly reason: string }
  | { readonly outcome: 'nothing'; readonly safe: string; readonly garbageDeleted: number }
  | {
      readonly outcome: 'stage';
      readonly safe: string;
      readonly generation: number;
      readonly action: string;
      readonly next?: string;
    }
  | { readonly outcome: 'committed'; readonly safe: string; readonly result: CompactionResult }
  | {
      readonly outcome: 'stale';
      readonly safe: string;
      readonly generation: number;
      readonly reason: string;
    };

function segmentIds(keys: readonly string[]): string[] {
  return keys.flatMap((k) => {
    try {
      const p = parseKey(k);
      return p.kind === 'segment' ? [p.segment] : [];
    } catch {
      return [];
    }
  });
}

/** Records the newest generation in the catalog if the catalog is behind (a crash after commit). */
export async function syncCatalog(deps: CompactionDeps, safe: string, gen?: Generation): Promise<void> {
  const g = gen ?? (await new SafeReader(deps.storeFor(safe), safe).generation());
  if (!g) return;
  const s = await deps.catalog.getSafe(safe);
  if ((s?.generation ?? 0) >= g.generation) return;
  // from the catalog's state, not from the last generation's diff: generations it never recorded
  // (an agent's compaction of this safe, a sync that failed) are covered too
  const retained = new Set(g.rps.map((r) => r.rp));
  const expired = (await deps.catalog.listRps(safe))
    .filter(
      (r) => r.rp <= g.upTo && !retained.has(r.rp) && (r.state === 'committed' || r.state === 'waiting'),
    )
    .map((r) => r.rp);
  const condemned = g.garbage.flatMap((x) => {
    const [id] = segmentIds([x.key]);
    return id ? [{ id, generation: x.generation ?? g.generation }] : [];
  });
  const revived = g.revived ?? [];
  await deps.catalog.recordGeneration({
    safe,
    generation: g.generation,
    upTo: g.upTo,
    expired,
    written: g.written.map((w) => ({ safe, ...w, firstRp: g.upTo, liveBytes: w.bytes })),
    condemned,
    revived,
    retention: g.policy,
    at: g.createdAt,
  });
}

type Staged = Exclude<CompactionTask, { action: 'compact' }>;

/** The next stage's tasks: run in place when there are few (`inline`), else queued. */
async function fanOut(
  deps: CompactionDeps,
  store: ObjectStore,
  journal: Journal,
  lock: HeldLock,
  from: string,
  tasks: Staged[],
): Promise<TaskOutcome> {
  if (tasks.length <= deps.inline) {
    let last: TaskOutcome | undefined;
    for (const t of tasks) last = await advance(deps, store, journal, t, lock);
    return last!;
  }
  await deps.send(tasks);
  const { safe, generation, action } = tasks[0]!;
  return { outcome: 'stage', safe, generation, action: from, next: `${tasks.length} ${action} tasks` };
}

/** Runs stages from `task` on: in place while a stage has few units, else fanned out as tasks. */
async function advance(
  deps: CompactionDeps,
  store: ObjectStore,
  journal: Journal,
  task: Staged,
  lock: HeldLock,
): Promise<TaskOutcome> {
  const { safe, attempt } = task;
  const g = journal.generation;
  const shards = journal.shards.length;
  const fan = (tasks: Staged[]): Promise<TaskOutcome> =>
    fanOut(deps, store, journal, lock, task.action, tasks);
  const mapsTasks = (): Staged[] =>
    journal.shards.map((_, shard) => ({ action: 'maps', safe, generation: g, attempt, shard }));
  switch (task.action) {
    case 'liveness':
      await shardLiveness(store, safe, journal, task.shard);
      if (!(await shardsDone(store, safe, journal, 'live')))
        return { outcome: 'stage', safe, generation: g, action: 'liveness' };
      return fan([{ action: 'select', safe, generation: g, attempt }]);
    case 'select': {
      const plan = await selectRewrite(store, safe, journal, deps.segmentBytes);
      if (!plan) {
        await cleanUpAttempt(store, safe, journal);
        await lock.release();
        return { outcome: 'nothing', safe, garbageDeleted: journal.deleted.length };
      }
      if (plan.outputs.length === 0) return fan(mapsTasks());
      return fan(
        plan.outputs.map((_, output) => ({ action: 'rewrite', safe, generation: g, attempt, output })),
      );
    }
    case 'rewrite': {
      const plan = await readRewritePlan(store, safe, journal);
      await rewriteOutput(store, safe, plan, task.output, attempt);
      if (!(await rewritesDone(store, plan)))
        return { outcome: 'stage', safe, generation: g, action: 'rewrite' };
      return fan(mapsTasks());
    }
    case 'maps': {
      await shardMaps(store, safe, journal, await readRewritePlan(store, safe, journal), task.shard);
      if (!(await shardsDone(store, safe, journal, 'maps')))
        return { outcome: 'stage', safe, generation: g, action: 'maps' };
      return fan([{ action: 'finish', safe, generation: g, attempt }]);
    }
    case 'finish': {
      const plan = await readRewritePlan(store, safe, journal);
      const result = await finishCompaction(store, safe, journal, plan, lock, {
        now: () => deps.now(),
        log: deps.log,
      });
      await syncCatalog(deps, safe);
      await lock.release();
      return { outcome: 'committed', safe, result: { ...result, shards } };
    }
  }
}

/**
 * A generation the catalog recorded but the bucket no longer has: named, and nothing is compacted
 * (or deleted) on its account unless the attempt that made it can be committed again.
 */
async function missingGeneration(
  deps: CompactionDeps,
  store: ObjectStore,
  safe: string,
): Promise<number | undefined> {
  const recorded = (await deps.catalog.getSafe(safe))?.generation ?? 0;
  const newest = await newestGeneration(store, safe);
  return recorded > newest ? recorded : undefined;
}

async function startJob(deps: CompactionDeps, store: ObjectStore, safe: string): Promise<TaskOutcome> {
  await syncCatalog(deps, safe);
  let lock: HeldLock;
  try {
    lock = await acquireLock(store, safe, {
      kind: 'compact',
      purpose: 'compact',
      owner: deps.owner,
      timing: deps.lockTiming ?? LOCK_TIMING,
      log: deps.log,
    });
  } catch (e) {
    if (e instanceof LockBusyError) return { outcome: 'busy', safe, reason: e.message };
    throw e;
  }
  let keep = false;
  try {
    const policy = (await readPolicy(store, safe)) ?? deps.defaultPolicy;
    const missing = await missingGeneration(deps, store, safe);
    const begun = await beginCompaction(
      store,
      safe,
      {
        policy,
        owner: deps.owner,
        graceMs: deps.graceMs,
        maxDeltas: deps.maxDeltas,
        segmentBytes: deps.segmentBytes,
        shardBlocks: deps.shardBlocks,
        now: () => deps.now(),
        log: deps.log,
      },
      lock,
    );
    if (missing !== undefined && !(begun.kind === 'resume' && begun.generation === missing))
      throw new CompactionError(
        'E_SAFE_FORMAT',
        `safe ${safe}: generation ${missing} is recorded in the catalog but gen/${String(missing).padStart(10, '0')}.json is missing from the bucket, and no finished attempt can commit it again; nothing is compacted or deleted until it is restored (from a replica or the bucket's versions)`,
      );
    if (begun.kind === 'resume') {
      const result = await finishCompaction(store, safe, begun.journal, begun.plan, lock, {
        now: () => deps.now(),
        log: deps.log,
        notes: begun.notes,
      });
      await syncCatalog(deps, safe);
      return { outcome: 'committed', safe, result };
    }
    const deletedSegments = segmentIds(begun.garbageDeleted);
    if (deletedSegments.length > 0)
      await deps.catalog.markSegmentsDeleted(safe, deletedSegments, deps.now().toISOString());
    if (begun.kind === 'nothing')
      return { outcome: 'nothing', safe, garbageDeleted: begun.garbageDeleted.length };
    const { journal } = begun;
    const attempt = journal.attempt!;
    const liveness: Staged[] = journal.shards.map((_, shard) => ({
      action: 'liveness',
      safe,
      generation: journal.generation,
      attempt,
      shard,
    }));
    const outcome = await fanOut(deps, store, journal, lock, 'compact', liveness);
    keep = outcome.outcome === 'stage';
    return outcome;
  } finally {
    if (keep) await lock.detach();
    else await lock.release();
  }
}

export async function handleCompactionTask(deps: CompactionDeps, task: CompactionTask): Promise<TaskOutcome> {
  const { safe } = task;
  const store = deps.storeFor(safe);
  if (task.action === 'compact') return startJob(deps, store, safe);
  const stale = (reason: string): TaskOutcome => ({
    outcome: 'stale',
    safe,
    generation: task.generation,
    reason,
  });
  let journal: Journal;
  try {
    journal = await readJournal(store, safe, task.generation, task.attempt);
  } catch (e) {
    if (e instanceof NotFoundError) return stale('its journal is gone');
    throw e;
  }
  if ((await newestGeneration(store, safe)) >= task.generation) {
    // a retried finish whose catalog update failed, or a late task: the catalog is brought up to
    // date, and the job's lock (its generation is committed) is not left to go stale
    await syncCatalog(deps, safe);
    if (journal.lock) await store.delete(lockKey(safe, journal.lock));
    return stale('the generation is committed');
  }
  if (!journal.lock) return stale('a v1 journal');
  let lock: HeldLock;
  try {
    lock = await resumeLock(store, safe, journal.lock, deps.lockTiming ?? LOCK_TIMING, deps.log);
  } catch (e) {
    if (e instanceof LockLostError) return stale(e.message);
    throw e;
  }
  let outcome: TaskOutcome | undefined;
  try {
    outcome = await advance(deps, store, journal, task, lock);
    return outcome;
  } finally {
    // the job goes on in other tasks: keep the lock unless this task ended it (released inside)
    if (outcome?.outcome === 'stage') await lock.detach();
    else if (outcome === undefined) await lock.detach();
  }
}

/** The scheduled run: one compact task per safe in the catalog. */
export async function scheduleAll(deps: CompactionDeps): Promise<{ safes: number }> {
  const safes = await deps.catalog.listSafes();
  await deps.send(safes.map((s) => ({ action: 'compact', safe: s.safe })));
  return { safes: safes.length };
}
