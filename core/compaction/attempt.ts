/**
 * A compaction attempt: one try at committing generation <g>, under its own folder
 * `gen/<g>/<attempt>/` (journal, shard work objects, rebuilt maps) plus the output segments its
 * rewrite plan names. Attempts never share an object, so two of them (a crashed one and the next,
 * or a stale compactor and the one that took over) never touch each other's work: what a dead
 * attempt left is garbage for the next generation (orphans.ts), except a complete attempt whose
 * commit is missing, which the next compaction commits (docs/FORMAT.md §9a.5).
 */
import { createHash } from 'node:crypto';
import type { ZodType } from 'zod';
import { CdpError, NotFoundError } from '../errors.ts';
import type { StoredPolicy } from '../format/generation.ts';
import {
  decodeJournal,
  decodeRewritePlan,
  type Journal,
  type RewritePlan,
  type ShardMaps,
  shardLivenessSchema,
  shardMapsSchema,
} from '../format/generation.ts';
import { decodeVersionedJson } from '../format/manifest.ts';
import { attemptsPrefix, compactionWorkKey, generationWorkPrefix, journalKey, parseKey } from '../keys.ts';
import type { LockTiming, SeenLock } from '../locks.ts';
import type { ObjectStore } from '../ports/object-store.ts';

export interface CompactionSettings {
  readonly policy: StoredPolicy;
  /** Every retained RP restores from one full map plus at most this many deltas. */
  readonly maxDeltas?: number;
  /** A segment is rewritten when its live frames fall below this fraction of its frames. */
  readonly rewriteBelow?: number;
  readonly segmentBytes?: number;
  /** Blocks per shard: the unit of planning and map writing. */
  readonly shardBlocks?: number;
  /** Garbage is deleted this long after it stopped being referenced (> any restore URL's lifetime). */
  readonly graceMs?: number;
  /** Who compacts (an agent id, a function): recorded in the lock and the journal. */
  readonly owner: string;
  readonly lockTiming?: LockTiming;
  readonly now?: () => Date;
  readonly log?: (msg: string) => void;
}

export const COMPACTION_DEFAULTS = {
  maxDeltas: 7,
  rewriteBelow: 0.5,
  segmentBytes: 32 * 1024 * 1024,
  /** 2^22 blocks: 256 GiB of device at 64 KiB blocks per shard. */
  shardBlocks: 2 ** 22,
  graceMs: 2 * 3600_000,
  /** Temporary files and unfinished uploads older than this are removed, whoever left them. */
  temporariesMs: 24 * 3600_000,
} as const;

export interface CompactionResult {
  /** The generation committed, or null when there was nothing to do. */
  readonly generation: number | null;
  readonly kept: readonly number[];
  readonly expired: readonly number[];
  readonly mapsWritten: number;
  readonly segmentsRewritten: number;
  readonly bytesRewritten: number;
  readonly segmentsWritten: number;
  readonly shards: number;
  readonly garbageDeleted: number;
  readonly garbagePending: number;
  /** Objects nothing referenced (left by killed runs) that this generation listed as garbage. */
  readonly orphansCondemned: number;
  /** What the operator should know (a generation committed again, garbage a lock still holds). */
  readonly notes: readonly string[];
  readonly durationMs: number;
}

export class CompactionError extends CdpError {}

export async function readJson<T>(
  store: ObjectStore,
  key: string,
  decode: (b: Buffer, where: string) => T,
): Promise<T | undefined> {
  try {
    return decode(await store.get(key), key);
  } catch (e) {
    if (e instanceof NotFoundError) return undefined;
    throw e;
  }
}

/** The attempt id of a v2 journal (v1 journals, written before attempts had folders, are not resumed). */
export function attemptOf(journal: Journal): string {
  if (!journal.attempt)
    throw new CompactionError(
      'E_SAFE_FORMAT',
      `generation ${journal.generation}: a v1 journal has no attempt id`,
    );
  return journal.attempt;
}

export function workKey(
  safe: string,
  journal: Journal,
  name: 'rewrite' | `${'live' | 'maps'}-${number}`,
): string {
  return compactionWorkKey(safe, journal.generation, attemptOf(journal), name);
}

export async function readJournal(
  store: ObjectStore,
  safe: string,
  g: number,
  attempt: string,
): Promise<Journal> {
  const key = journalKey(safe, g, attempt);
  return decodeJournal(await store.get(key), key);
}

export async function readRewritePlan(
  store: ObjectStore,
  safe: string,
  journal: Journal,
): Promise<RewritePlan> {
  const key = workKey(safe, journal, 'rewrite');
  return decodeRewritePlan(await store.get(key), key);
}

/**
 * Whether every block map the shards' `maps-<i>` name is there with the size and SHA-256 they
 * record: an attempt is committed again only as it was, never over a map lost or damaged since.
 */
async function mapsIntact(store: ObjectStore, shardMaps: readonly string[]): Promise<boolean> {
  const checked = new Set<string>();
  for (const mk of shardMaps) {
    let entries: ShardMaps['maps'];
    try {
      entries = decodeVersionedJson(shardMapsSchema, await store.get(mk), mk, 'shard maps').maps;
    } catch (e) {
      if (e instanceof NotFoundError || e instanceof CdpError) return false;
      throw e;
    }
    for (const m of entries) {
      const ref = m.part ?? m.whole;
      if (!ref || checked.has(ref.key)) continue;
      checked.add(ref.key);
      const body = await store.get(ref.key).catch((e: unknown) => {
        if (e instanceof NotFoundError) return undefined;
        throw e;
      });
      if (!body || body.length !== ref.bytes) return false;
      if (createHash('sha256').update(body).digest('hex') !== ref.sha256) return false;
    }
  }
  return true;
}

/** Whether every object decodes by `schema` (work objects altered since they were written do not). */
async function allDecode(store: ObjectStore, keys: readonly string[], schema: ZodType): Promise<boolean> {
  for (const k of keys) {
    try {
      decodeVersionedJson(schema, await store.get(k), k, 'compaction work object');
    } catch (e) {
      if (e instanceof CdpError) return false;
      throw e;
    }
  }
  return true;
}

/** Whether every key exists. */
export async function allPresent(store: ObjectStore, keys: readonly string[]): Promise<boolean> {
  for (const k of keys) if (!(await store.head(k))) return false;
  return true;
}

/** Deletes what this attempt wrote (its output segments and its folder): only ever its own. */
export async function cleanUpAttempt(
  store: ObjectStore,
  safe: string,
  journal: Journal,
  log: (m: string) => void = () => undefined,
): Promise<void> {
  const prefix = generationWorkPrefix(safe, journal.generation, attemptOf(journal));
  const work = await store.list(prefix);
  const rewrite = await readJson(store, workKey(safe, journal, 'rewrite'), decodeRewritePlan);
  const outputs = rewrite?.outputs.map((o) => o.key) ?? [];
  for (const k of outputs) await store.delete(k);
  const journalAt = journalKey(safe, journal.generation, attemptOf(journal));
  for (const o of work) if (o.key !== journalAt) await store.delete(o.key);
  await store.delete(journalAt);
  log(
    `generation ${journal.generation}: removed the ${outputs.length + work.length} objects of this attempt`,
  );
}

/**
 * An attempt at generation `g` whose work is complete (every shard's maps, every output segment)
 * but whose generation was never committed or was lost, planned on generation `previous`, and whose
 * compactor holds no live lock: committing it gives exactly the generation it would have committed.
 */
export async function findCompleteAttempt(
  store: ObjectStore,
  safe: string,
  g: number,
  previous: number | null,
  others: readonly SeenLock[],
): Promise<{ journal: Journal; plan: RewritePlan } | undefined> {
  const journals: string[] = [];
  for (const o of await store.list(attemptsPrefix(safe, g))) {
    try {
      const k = parseKey(o.key);
      if (k.kind === 'journal' && k.attempt) journals.push(o.key);
    } catch {
      /* not ours */
    }
  }
  for (const key of journals) {
    const journal = await readJson(store, key, decodeJournal).catch(() => undefined);
    if (!journal?.attempt || (journal.previous ?? null) !== previous) continue;
    // its retained RPs must chain as a generation's do (each over the one before): else it was altered
    if (journal.kept.some((k, i) => k.parent !== (i > 0 ? journal.kept[i - 1]!.rp : null))) continue;
    if (journal.lock && others.some((o) => !o.stale && o.id === journal.lock)) continue;
    const plan = await readJson(store, workKey(safe, journal, 'rewrite'), decodeRewritePlan).catch(
      () => undefined,
    );
    if (!plan) continue;
    const maps = journal.shards.map((_, i) => workKey(safe, journal, `maps-${i}`));
    const live = journal.shards.map((_, i) => workKey(safe, journal, `live-${i}`));
    if (!(await allPresent(store, [...maps, ...live, ...plan.outputs.map((o) => o.key)]))) continue;
    if (!(await mapsIntact(store, maps))) continue;
    if (!(await allDecode(store, live, shardLivenessSchema))) continue;
    return { journal, plan };
  }
  return undefined;
}
