/**
 * Use case: the offsite compaction of a safe, as tasks on the compaction queue (one stage of
 * core/compaction/compact.ts each; every task is idempotent, and the task that sees a stage
 * complete starts the next):
 *
 *   compact  {safe}                take the catalog lease, begin (GC, retention, block-range
 *                                  shards, journal), fan out one liveness task per shard
 *   liveness {safe, gen, shard}    the frame ranges the shard's retained maps reference
 *   select   {safe, gen}           merge liveness, choose the output segments (or stop: nothing
 *                                  to do), fan out one rewrite task per output segment
 *   rewrite  {safe, gen, output}   write one dense segment
 *   maps     {safe, gen, shard}    write the shard's part of every changed map
 *   finish   {safe, gen}           commit the generation, record it in the catalog (expired RPs
 *                                  leave the committed set), release the lease
 *
 * A stage with few units runs in place instead of fanning out (`inline`). Every task renews the
 * lease for the journal's owner, so no other compaction starts meanwhile; a job whose tasks all
 * died leaves a journal that the next compaction cleans up once the lease expires.
 */
import { randomUUID } from 'node:crypto';
import {
  beginCompaction,
  COMPACTION_DEFAULTS,
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
import { CatalogLease, LeaseBusyError } from '#core/compaction/lease.ts';
import { readPolicy } from '#core/compaction/policy.ts';
import type { Generation, Journal, StoredPolicy } from '#core/format/generation.ts';
import type { Catalog } from '#core/ports/catalog.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import { SafeReader } from '#core/safe-reader.ts';

export type CompactionTask =
  | { readonly action: 'compact'; readonly safe: string }
  | {
      readonly action: 'liveness' | 'maps';
      readonly safe: string;
      readonly generation: number;
      readonly shard: number;
    }
  | { readonly action: 'select' | 'finish'; readonly safe: string; readonly generation: number }
  | {
      readonly action: 'rewrite';
      readonly safe: string;
      readonly generation: number;
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
  readonly leaseMs?: number;
  now(): Date;
  log?(msg: string): void;
}

export type TaskOutcome =
  | { readonly outcome: 'busy'; readonly safe: string }
  | { readonly outcome: 'nothing'; readonly safe: string; readonly garbageDeleted: number }
  | {
      readonly outcome: 'stage';
      readonly safe: string;
      readonly generation: number;
      readonly action: string;
      readonly next?: string;
    }
  | { readonly outcome: 'committed'; readonly safe: string; readonly result: CompactionResult }
  | { readonly outcome: 'stale'; readonly safe: string; readonly generation: number };

/** Records the newest generation in the catalog if the catalog is behind (a crash after commit). */
export async function syncCatalog(deps: CompactionDeps, safe: string, gen?: Generation): Promise<void> {
  const g = gen ?? (await new SafeReader(deps.storeFor(safe), safe).generation());
  if (!g) return;
  const s = await deps.catalog.getSafe(safe);
  if ((s?.generation ?? 0) >= g.generation) return;
  await deps.catalog.recordGeneration({
    safe,
    generation: g.generation,
    upTo: g.upTo,
    expired: g.stats.expired,
    written: g.written.map((w) => ({ safe, ...w, firstRp: g.upTo, liveBytes: w.bytes })),
    retention: g.policy,
    at: g.createdAt,
  });
}

function lease(deps: CompactionDeps, safe: string, owner: string): CatalogLease {
  return new CatalogLease(deps.catalog, safe, owner, deps.leaseMs ?? COMPACTION_DEFAULTS.leaseMs, () =>
    deps.now(),
  );
}

type Staged = Exclude<CompactionTask, { action: 'compact' }>;

/** The next stage's tasks: run in place when there are few (`inline`), else queued. */
async function fanOut(
  deps: CompactionDeps,
  store: ObjectStore,
  journal: Journal,
  l: CatalogLease,
  from: string,
  tasks: Staged[],
): Promise<TaskOutcome> {
  if (tasks.length <= deps.inline) {
    let last: TaskOutcome | undefined;
    for (const t of tasks) last = await advance(deps, store, journal, t, l);
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
  l: CatalogLease,
): Promise<TaskOutcome> {
  const { safe } = task;
  const g = journal.generation;
  const shards = journal.shards.length;
  const fan = (tasks: Staged[]): Promise<TaskOutcome> => fanOut(deps, store, journal, l, task.action, tasks);
  switch (task.action) {
    case 'liveness':
      await shardLiveness(store, safe, journal, task.shard);
      if (!(await shardsDone(store, safe, journal, 'live')))
        return { outcome: 'stage', safe, generation: g, action: 'liveness' };
      return fan([{ action: 'select', safe, generation: g }]);
    case 'select': {
      const plan = await selectRewrite(store, safe, journal, deps.segmentBytes);
      if (!plan) {
        await cleanUpAttempt(store, safe, g);
        await l.release();
        return { outcome: 'nothing', safe, garbageDeleted: journal.deleted.length };
      }
      if (plan.outputs.length === 0)
        return fan(journal.shards.map((_, shard) => ({ action: 'maps', safe, generation: g, shard })));
      return fan(plan.outputs.map((_, output) => ({ action: 'rewrite', safe, generation: g, output })));
    }
    case 'rewrite': {
      const plan = await readRewritePlan(store, safe, g);
      await rewriteOutput(store, safe, plan, task.output);
      if (!(await rewritesDone(store, plan)))
        return { outcome: 'stage', safe, generation: g, action: 'rewrite' };
      return fan(journal.shards.map((_, shard) => ({ action: 'maps', safe, generation: g, shard })));
    }
    case 'maps': {
      await shardMaps(store, safe, journal, await readRewritePlan(store, safe, g), task.shard);
      if (!(await shardsDone(store, safe, journal, 'maps')))
        return { outcome: 'stage', safe, generation: g, action: 'maps' };
      return fan([{ action: 'finish', safe, generation: g }]);
    }
    case 'finish': {
      const plan = await readRewritePlan(store, safe, g);
      const result = await finishCompaction(store, safe, journal, plan, {
        now: () => deps.now(),
        log: deps.log,
      });
      await syncCatalog(deps, safe);
      await l.release();
      return { outcome: 'committed', safe, result: { ...result, shards } };
    }
  }
}

export async function handleCompactionTask(deps: CompactionDeps, task: CompactionTask): Promise<TaskOutcome> {
  const { safe } = task;
  const store = deps.storeFor(safe);
  if (task.action === 'compact') {
    await syncCatalog(deps, safe);
    const l = lease(deps, safe, `compaction-${randomUUID()}`);
    try {
      await l.acquire();
    } catch (e) {
      if (e instanceof LeaseBusyError) return { outcome: 'busy', safe };
      throw e;
    }
    try {
      const policy = (await readPolicy(store, safe)) ?? deps.defaultPolicy;
      const begun = await beginCompaction(store, safe, {
        policy,
        owner: l.owner,
        graceMs: deps.graceMs,
        maxDeltas: deps.maxDeltas,
        segmentBytes: deps.segmentBytes,
        shardBlocks: deps.shardBlocks,
        now: () => deps.now(),
        log: deps.log,
      });
      if (begun.kind === 'nothing') {
        await l.release();
        return { outcome: 'nothing', safe, garbageDeleted: begun.garbageDeleted };
      }
      const { journal } = begun;
      const liveness: Staged[] = journal.shards.map((_, shard) => ({
        action: 'liveness',
        safe,
        generation: journal.generation,
        shard,
      }));
      return await fanOut(deps, store, journal, l, 'compact', liveness);
    } catch (e) {
      await l.release().catch(() => undefined);
      throw e;
    }
  }
  const journal = await readJournal(store, safe, task.generation).catch(() => undefined);
  const done = (await new SafeReader(store, safe).generation())?.generation ?? 0;
  if (!journal || done >= task.generation) return { outcome: 'stale', safe, generation: task.generation };
  const l = lease(deps, safe, journal.owner);
  await l.acquire(); // renew; throws if another compaction took over after our lease expired
  return advance(deps, store, journal, task, l);
}

/** The scheduled run: one compact task per safe in the catalog. */
export async function scheduleAll(deps: CompactionDeps): Promise<{ safes: number }> {
  const safes = await deps.catalog.listSafes();
  await deps.send(safes.map((s) => ({ action: 'compact', safe: s.safe })));
  return { safes: safes.length };
}
