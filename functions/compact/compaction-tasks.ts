/**
 * Use case: the offsite compaction of a safe, as tasks on the compaction queue.
 *
 *   compact {safe}               take the catalog lease, begin (GC, plan, journal); a small job
 *                                finishes in place, a large one fans out one rewrite task per
 *                                output segment
 *   rewrite {safe, gen, output}  write one output segment (idempotent); the task that sees every
 *                                output written sends the finish task
 *   finish  {safe, gen}          replan, write maps, commit the generation, record it in the
 *                                catalog (expired RPs leave the committed set), release the lease
 *
 * Every task renews the lease for the journal's owner, so no other compaction starts meanwhile;
 * a job whose tasks all died leaves a journal the next compaction cleans up once the lease expires.
 */
import { randomUUID } from 'node:crypto';
import {
  beginCompaction,
  COMPACTION_DEFAULTS,
  type CompactionResult,
  finishCompaction,
  readJournal,
  rewriteOutput,
} from '#core/compaction/compact.ts';
import { CatalogLease, LeaseBusyError } from '#core/compaction/lease.ts';
import { readPolicy } from '#core/compaction/policy.ts';
import type { Generation, StoredPolicy } from '#core/format/generation.ts';
import type { Catalog } from '#core/ports/catalog.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import { SafeReader } from '#core/safe-reader.ts';

export type CompactionTask =
  | { readonly action: 'compact'; readonly safe: string }
  | {
      readonly action: 'rewrite';
      readonly safe: string;
      readonly generation: number;
      readonly output: number;
    }
  | { readonly action: 'finish'; readonly safe: string; readonly generation: number };

export interface CompactionDeps {
  readonly catalog: Catalog;
  storeFor(safe: string): ObjectStore;
  send(tasks: readonly CompactionTask[]): Promise<void>;
  readonly defaultPolicy: StoredPolicy;
  readonly graceMs: number;
  readonly maxDeltas: number;
  readonly segmentBytes?: number;
  /** Jobs with more output segments than this fan out over invocations. */
  readonly inlineOutputs: number;
  readonly leaseMs?: number;
  now(): Date;
  log?(msg: string): void;
}

export type TaskOutcome =
  | { readonly outcome: 'busy'; readonly safe: string }
  | { readonly outcome: 'nothing'; readonly safe: string; readonly garbageDeleted: number }
  | {
      readonly outcome: 'fanned-out';
      readonly safe: string;
      readonly generation: number;
      readonly tasks: number;
    }
  | {
      readonly outcome: 'rewrote';
      readonly safe: string;
      readonly generation: number;
      readonly output: number;
      readonly bytes: number;
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

async function finish(
  deps: CompactionDeps,
  safe: string,
  generation: number,
  owner: CatalogLease,
): Promise<TaskOutcome> {
  const store = deps.storeFor(safe);
  const journal = await readJournal(store, safe, generation);
  const result = await finishCompaction(store, safe, journal, { now: () => deps.now(), log: deps.log });
  await syncCatalog(deps, safe);
  await owner.release();
  return { outcome: 'committed', safe, result };
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
        now: () => deps.now(),
        log: deps.log,
      });
      if (begun.kind === 'nothing') {
        await l.release();
        return { outcome: 'nothing', safe, garbageDeleted: begun.result.garbageDeleted };
      }
      const n = begun.journal.outputs.length;
      if (n <= deps.inlineOutputs) {
        for (let i = 0; i < n; i++) await rewriteOutput(store, safe, begun.journal, i);
        return await finish(deps, safe, begun.generation, l);
      }
      await deps.send(
        Array.from({ length: n }, (_, output) => ({
          action: 'rewrite',
          safe,
          generation: begun.generation,
          output,
        })),
      );
      return { outcome: 'fanned-out', safe, generation: begun.generation, tasks: n };
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
  if (task.action === 'rewrite') {
    const r = await rewriteOutput(store, safe, journal, task.output);
    const written = await Promise.all(journal.outputs.map((o) => store.head(o.key)));
    if (written.every((w) => w !== undefined))
      await deps.send([{ action: 'finish', safe, generation: task.generation }]);
    return { outcome: 'rewrote', safe, generation: task.generation, output: task.output, bytes: r.bytes };
  }
  return finish(deps, safe, task.generation, l);
}

/** The scheduled run: one compact task per safe in the catalog. */
export async function scheduleAll(deps: CompactionDeps): Promise<{ safes: number }> {
  const safes = await deps.catalog.listSafes();
  await deps.send(safes.map((s) => ({ action: 'compact', safe: s.safe })));
  return { safes: safes.length };
}
