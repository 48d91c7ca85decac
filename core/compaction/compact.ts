/**
 * Compaction of one safe (docs/FORMAT.md §9a), the same code onsite (`cdp-agent compact`, all
 * stages in one process) and offsite (the compaction Lambda, each stage fanned out over SQS):
 *
 *   begin     lease; delete what a crashed attempt at the next generation wrote (its journal and
 *             work objects name it); collect garbage past its grace period; plan retention; split
 *             every device into block-range shards; write the journal
 *   liveness  per shard: walk the device's maps clipped to the shard, write the frame ranges its
 *             retained maps reference (`live-<i>.json`)
 *   select    merge the shards' liveness, pick sparse segments, plan the output segments
 *             (`rewrite.json`); or find there is nothing to do
 *   rewrite   per output segment: copy the live frames, byte for byte (no key needed); idempotent
 *   maps      per shard: plan again, remap moved frames, write the shard's part of every map that
 *             changed (`maps-<i>.json` lists them)
 *   finish    assemble the generation from the shards' maps, list the garbage, commit
 *             gen/<g>.json with putIfAbsent: the single switch readers see
 *
 * A crash before the commit leaves the old view intact (new objects are referenced by nothing and
 * the next run deletes them); after it the new view is complete. No stage holds more than one
 * shard's extents, except select, which holds the merged liveness ranges (per segment, not block).
 */
import { createHash } from 'node:crypto';
import { mapLimit } from '../concurrency.ts';
import { CdpError, ConflictError, NotFoundError } from '../errors.ts';
import { encodeBlockMap } from '../format/block-map.ts';
import { FORMAT_VERSION } from '../format/constants.ts';
import {
  type BlockMapRef,
  decodeJournal,
  decodeRewritePlan,
  type Generation,
  type GenerationRp,
  type Journal,
  type RewritePlan,
  type ShardLiveness,
  type ShardMaps,
  type StoredPolicy,
  shardLivenessSchema,
  shardMapsSchema,
} from '../format/generation.ts';
import { decodeVersionedJson, encodeJson } from '../format/manifest.ts';
import {
  compactionWorkKey,
  generationKey,
  generationMapKey,
  generationMapPartKey,
  generationWorkPrefix,
  journalKey,
  manifestKey,
  parseKey,
  segmentKey,
} from '../keys.ts';
import type { ObjectStore } from '../ports/object-store.ts';
import { SafeReader } from '../safe-reader.ts';
import { collectGarbage } from './collect-garbage.ts';
import { remap } from './extent-diff.ts';
import { type Lease, ObjectStoreLease } from './lease.ts';
import { findSparse, mergeRanges, planShard, retentionOf, shardsOf } from './plan.ts';
import { frameCount, movesOf, planRewrite, writeOutputSegment } from './rewrite-segments.ts';

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
  readonly owner: string;
  readonly lease?: Lease;
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
  leaseMs: 15 * 60_000,
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
  readonly durationMs: number;
}

export class CompactionError extends CdpError {}

async function readJson<T>(
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

/** Deletes whatever an attempt at generation `g` wrote: its output segments and its work objects. */
export async function cleanUpAttempt(
  store: ObjectStore,
  safe: string,
  g: number,
  log: (m: string) => void = () => undefined,
): Promise<void> {
  const work = await store.list(generationWorkPrefix(safe, g));
  if (work.length === 0) return;
  const rewrite = await readJson(store, compactionWorkKey(safe, g, 'rewrite'), decodeRewritePlan);
  const outputs = rewrite?.outputs.map((o) => o.key) ?? [];
  for (const k of outputs) await store.delete(k);
  for (const o of work) if (o.key !== journalKey(safe, g)) await store.delete(o.key);
  await store.delete(journalKey(safe, g));
  log(`generation ${g}: removed ${outputs.length + work.length} objects of an interrupted attempt`);
}

export type Begun =
  | { readonly kind: 'nothing'; readonly garbageDeleted: number; readonly garbagePending: number }
  | { readonly kind: 'started'; readonly generation: number; readonly journal: Journal };

/** Stage begin (holding the lease): clean up, collect garbage, plan retention and shards, write the journal. */
export async function beginCompaction(
  store: ObjectStore,
  safe: string,
  s: CompactionSettings,
): Promise<Begun> {
  const now = s.now ?? (() => new Date());
  const log = s.log ?? (() => undefined);
  const reader = new SafeReader(store, safe);
  if (!(await reader.config()))
    throw new NotFoundError(`safe ${safe} (no safe.json at ${store.location})`, { safe });
  const old = await reader.generation();
  const g = (old?.generation ?? 0) + 1;
  await cleanUpAttempt(store, safe, g, log);
  const gc = await collectGarbage(reader, old, now(), s.graceMs ?? COMPACTION_DEFAULTS.graceMs);
  if (gc.deleted.length > 0) log(`deleted ${gc.deleted.length} objects past their grace period`);
  const view = await retentionOf(reader, s.policy);
  if (!view) return { kind: 'nothing', garbageDeleted: gc.deleted.length, garbagePending: gc.kept };
  const journal: Journal = {
    format: 'cdp-journal',
    version: FORMAT_VERSION,
    generation: g,
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
  if (!(await store.putIfAbsent(journalKey(safe, g), encodeJson(journal))))
    throw new ConflictError(`compaction journal of generation ${g}`, { safe });
  return { kind: 'started', generation: g, journal };
}

export async function readJournal(store: ObjectStore, safe: string, g: number): Promise<Journal> {
  return decodeJournal(await store.get(journalKey(safe, g)), journalKey(safe, g));
}

async function viewOf(reader: SafeReader, journal: Journal) {
  const view = await retentionOf(reader, journal.policy, journal.upTo);
  if (!view)
    throw new CompactionError(
      'E_SAFE_FORMAT',
      `generation ${journal.generation}: the safe has no RPs any more`,
    );
  return view;
}

/** Stage liveness, shard `i`: the frame ranges its retained maps reference, and what the old view referenced. */
export async function shardLiveness(
  store: ObjectStore,
  safe: string,
  journal: Journal,
  i: number,
): Promise<void> {
  const key = compactionWorkKey(safe, journal.generation, `live-${i}`);
  if (await store.head(key)) return;
  const reader = new SafeReader(store, safe);
  const plan = await planShard(reader, await viewOf(reader, journal), journal.shards[i]!, {
    maxDeltas: journal.maxDeltas,
  });
  const out: ShardLiveness = {
    segments: Object.fromEntries(plan.liveness),
    oldRefs: [...plan.oldRefs],
    oldSegments: [...plan.oldSegments],
    changes: plan.maps.filter((m) => !m.map.reuse).length,
  };
  await store.put(key, encodeJson(out));
}

async function allPresent(store: ObjectStore, keys: readonly string[]): Promise<boolean> {
  const heads = await mapLimit(keys, 16, (k) => store.head(k));
  return heads.every((h) => h !== undefined);
}

/** Whether every shard has written its `live` (liveness) or `maps` output. */
export function shardsDone(
  store: ObjectStore,
  safe: string,
  journal: Journal,
  stage: 'live' | 'maps',
): Promise<boolean> {
  return allPresent(
    store,
    journal.shards.map((_, i) => compactionWorkKey(safe, journal.generation, `${stage}-${i}`)),
  );
}

/** Stage select: merge liveness, choose the output segments; undefined when there is nothing to do. */
export async function selectRewrite(
  store: ObjectStore,
  safe: string,
  journal: Journal,
  segmentBytes: number = COMPACTION_DEFAULTS.segmentBytes,
): Promise<RewritePlan | undefined> {
  const g = journal.generation;
  const existing = await readJson(store, compactionWorkKey(safe, g, 'rewrite'), decodeRewritePlan);
  if (existing) return existing;
  const merged = new Map<string, [number, number][]>();
  const oldSegments = new Set<string>();
  let changes = 0;
  for (let i = 0; i < journal.shards.length; i++) {
    const key = compactionWorkKey(safe, g, `live-${i}`);
    const live = decodeVersionedJson(shardLivenessSchema, await store.get(key), key, 'shard liveness');
    for (const [seg, ranges] of Object.entries(live.segments)) {
      const list = merged.get(seg) ?? [];
      for (const [f, c] of ranges) list.push([f, c]);
      merged.set(seg, list);
    }
    for (const x of live.oldSegments) oldSegments.add(x);
    changes += live.changes;
  }
  for (const [seg, list] of merged) merged.set(seg, mergeRanges(list));
  const sparse = await findSparse(new SafeReader(store, safe), merged, journal.rewriteBelow);
  const dead = [...oldSegments].filter((x) => !merged.has(x));
  if (journal.expired.length === 0 && sparse.length === 0 && changes === 0 && dead.length === 0)
    return undefined;
  const outputs = planRewrite(safe, sparse, segmentBytes);
  const plan: RewritePlan = {
    format: 'cdp-rewrite',
    version: FORMAT_VERSION,
    generation: g,
    outputs: outputs.map((o) => ({
      id: o.id,
      key: o.key,
      sources: o.sources.map((x) => ({
        segment: x.segment,
        live: x.live.map(([f, c]) => [f, c] as [number, number]),
      })),
    })),
  };
  if (!(await store.putIfAbsent(compactionWorkKey(safe, g, 'rewrite'), encodeJson(plan))))
    return decodeRewritePlan(await store.get(compactionWorkKey(safe, g, 'rewrite')), 'rewrite.json');
  return plan;
}

/** Stage rewrite, output `index` (any invocation, any order, repeatable). */
export async function rewriteOutput(
  store: ObjectStore,
  safe: string,
  plan: RewritePlan,
  index: number,
): Promise<{ bytes: number; frames: number }> {
  const o = plan.outputs[index];
  if (!o) throw new CompactionError('E_BAD_INPUT', `generation ${plan.generation} has no output ${index}`);
  const done = await store.head(o.key);
  if (done) return { bytes: done.size, frames: o.sources.reduce((n, x) => n + frameCount(x.live), 0) };
  const reader = new SafeReader(store, safe);
  const config = await reader.config();
  const sources = await Promise.all(
    o.sources.map(async (x) => ({ ...x, entries: await reader.segmentEntries(x.segment) })),
  );
  return writeOutputSegment(store, safe, { key: o.key, sources }, config?.encryption != null);
}

export function rewritesDone(store: ObjectStore, plan: RewritePlan): Promise<boolean> {
  return allPresent(
    store,
    plan.outputs.map((o) => o.key),
  );
}

export async function readRewritePlan(store: ObjectStore, safe: string, g: number): Promise<RewritePlan> {
  const key = compactionWorkKey(safe, g, 'rewrite');
  return decodeRewritePlan(await store.get(key), key);
}

/** Stage maps, shard `i`: plan again, remap, write the shard's part of every map that changed. */
export async function shardMaps(
  store: ObjectStore,
  safe: string,
  journal: Journal,
  plan: RewritePlan,
  i: number,
): Promise<void> {
  const g = journal.generation;
  const key = compactionWorkKey(safe, g, `maps-${i}`);
  if (await store.head(key)) return;
  const shard = journal.shards[i]!;
  const moves = movesOf(plan.outputs);
  const reader = new SafeReader(store, safe);
  const view = await viewOf(reader, journal);
  const planned = await planShard(reader, view, shard, {
    maxDeltas: journal.maxDeltas,
    moved: new Set(moves.keys()),
  });
  const out: ShardMaps = { maps: [] };
  for (const { rp, map } of planned.maps) {
    const blocks = Math.ceil(map.sizeBytes / map.blockSize);
    const wholeShard = shard.first === 0 && shard.end >= blocks;
    const base = {
      rp,
      device: map.id,
      sizeBytes: map.sizeBytes,
      blockSize: map.blockSize,
      full: map.full,
      first: shard.first,
      end: shard.end,
    };
    if (map.reuse) {
      out.maps.push(map.reuse.whole ? { ...base, whole: map.reuse.ref } : { ...base, part: map.reuse.ref });
      continue;
    }
    const extents = map.extents.some((e) => e.kind === 'data' && moves.has(e.segment))
      ? remap(map.extents, moves)
      : map.extents;
    const buf = encodeBlockMap({ blockSize: map.blockSize, deviceSize: map.sizeBytes, extents });
    const mapKey = wholeShard
      ? generationMapKey(safe, g, rp, map.id)
      : generationMapPartKey(safe, g, rp, map.id, shard.first);
    await store.put(mapKey, buf);
    const ref: BlockMapRef = {
      key: mapKey,
      bytes: buf.length,
      sha256: createHash('sha256').update(buf).digest('hex'),
      extents: extents.length,
    };
    out.maps.push(wholeShard ? { ...base, whole: ref } : { ...base, part: ref });
  }
  await store.put(key, encodeJson(out));
}

/** Stage finish: assemble the generation from the shards' maps and commit it. */
export async function finishCompaction(
  store: ObjectStore,
  safe: string,
  journal: Journal,
  plan: RewritePlan,
  s: Pick<CompactionSettings, 'now' | 'log'> = {},
): Promise<CompactionResult> {
  const t0 = Date.now();
  const now = s.now ?? (() => new Date());
  const g = journal.generation;
  const reader = new SafeReader(store, safe);
  const old = await reader.generation();
  if ((old?.generation ?? 0) >= g) {
    if (old?.generation === g) return resultOf(old, journal, 0, t0); // a duplicate finisher: already done
    throw new ConflictError(`generation ${g}`, { safe });
  }
  const written: Generation['written'] = [];
  for (const o of plan.outputs) {
    const info = await store.head(o.key);
    if (!info)
      throw new CompactionError(
        'E_INCOMPLETE',
        `output segment ${o.id} of generation ${g} is not written yet`,
      );
    written.push({
      id: o.id,
      key: o.key,
      bytes: info.size,
      frames: o.sources.reduce((n, x) => n + frameCount(x.live), 0),
    });
  }
  // the shards' maps → one entry per retained RP and device
  const byRp = new Map<number, Map<string, ShardMaps['maps']>>();
  const oldRefs = new Set<string>();
  const oldSegments = new Set<string>();
  const live = new Set<string>();
  const work: string[] = [];
  let mapsWritten = 0;
  for (let i = 0; i < journal.shards.length; i++) {
    const mk = compactionWorkKey(safe, g, `maps-${i}`);
    const lk = compactionWorkKey(safe, g, `live-${i}`);
    work.push(mk, lk);
    for (const m of decodeVersionedJson(shardMapsSchema, await store.get(mk), mk, 'shard maps').maps) {
      const devices = byRp.get(m.rp) ?? new Map();
      byRp.set(m.rp, devices);
      devices.set(m.device, [...(devices.get(m.device) ?? []), m]);
      const ref = m.part ?? m.whole;
      if (ref && writtenBy(ref.key, g)) mapsWritten++;
    }
    const l = decodeVersionedJson(shardLivenessSchema, await store.get(lk), lk, 'shard liveness');
    for (const k of l.oldRefs) oldRefs.add(k);
    for (const x of l.oldSegments) oldSegments.add(x);
    for (const x of Object.keys(l.segments)) live.add(x);
  }
  const rps: GenerationRp[] = journal.kept.map((k) => ({
    rp: k.rp,
    createdAt: k.createdAt,
    parent: k.parent,
    devices: [...(byRp.get(k.rp) ?? new Map<string, ShardMaps['maps']>())].map(([id, parts]) => {
      const sorted = [...parts].sort((a, b) => a.first - b.first);
      const head = sorted[0]!;
      const base = { id, sizeBytes: head.sizeBytes, blockSize: head.blockSize, full: head.full };
      if (sorted.every((p) => p.whole)) return { ...base, blockMap: head.whole! };
      if (!sorted.every((p) => p.part))
        throw new CompactionError(
          'E_INTERNAL',
          `RP ${k.rp} device ${id}: shards disagree on reusing its map`,
        );
      return { ...base, parts: sorted.map((p) => ({ first: p.first, end: p.end, blockMap: p.part! })) };
    }),
  }));
  const moves = movesOf(plan.outputs);
  const segments = new Set([...live].filter((x) => !moves.has(x)));
  for (const o of plan.outputs) segments.add(o.id);

  // garbage: what the old view referenced and the new one does not, plus what is still pending
  const newRefs = new Set<string>();
  for (const r of rps) {
    newRefs.add(manifestKey(safe, r.rp));
    for (const d of r.devices) {
      if (d.blockMap) newRefs.add(d.blockMap.key);
      for (const p of d.parts ?? []) newRefs.add(p.blockMap.key);
    }
  }
  for (const x of segments) newRefs.add(segmentKey(safe, x));
  const since = now().toISOString();
  const garbage = new Map<string, string>();
  const deleted = new Set(journal.deleted);
  for (const gb of old?.garbage ?? [])
    if (!deleted.has(gb.key) && !newRefs.has(gb.key)) garbage.set(gb.key, gb.since);
  const add = (key: string): void => {
    if (!garbage.has(key) && !newRefs.has(key)) garbage.set(key, since);
  };
  for (const rp of journal.expired) add(manifestKey(safe, rp));
  for (const k of oldRefs) add(k);
  for (const x of oldSegments) add(segmentKey(safe, x));
  if (old) add(generationKey(safe, old.generation));
  for (const k of [...work, compactionWorkKey(safe, g, 'rewrite'), journalKey(safe, g)]) add(k);
  const gen: Generation = {
    format: 'cdp-generation',
    version: FORMAT_VERSION,
    safe,
    generation: g,
    previous: old?.generation ?? null,
    createdAt: since,
    upTo: journal.upTo,
    maxDeltas: journal.maxDeltas,
    policy: journal.policy,
    rps,
    segments: [...segments].sort(),
    written,
    garbage: [...garbage].map(([key, at]) => ({ key, since: at })),
    stats: {
      expired: journal.expired.slice(),
      mapsWritten,
      segmentsRewritten: plan.outputs.reduce((n, o) => n + o.sources.length, 0),
      bytesRewritten: written.reduce((n, w) => n + w.bytes, 0),
      durationMs: Date.now() - Date.parse(journal.startedAt),
    },
  };
  if (!(await store.putIfAbsent(generationKey(safe, g), encodeJson(gen)))) {
    const raced = await new SafeReader(store, safe).generation();
    if (raced?.generation === g) return resultOf(raced, journal, journal.deleted.length, t0);
    throw new ConflictError(`generation ${g}`, { safe });
  }
  s.log?.(
    `generation ${g}: kept ${rps.length} RPs, merged ${journal.expired.length}, wrote ${mapsWritten} maps over ` +
      `${journal.shards.length} shards, rewrote ${gen.stats.segmentsRewritten} segments into ${written.length}`,
  );
  return resultOf(gen, journal, journal.deleted.length, t0);
}

/** Whether a map key is one generation `g` wrote (not one it reuses). */
function writtenBy(key: string, g: number): boolean {
  const k = parseKey(key);
  return k.kind === 'generation-map' && k.generation === g;
}

function resultOf(gen: Generation, journal: Journal, garbageDeleted: number, t0: number): CompactionResult {
  return {
    generation: gen.generation,
    kept: gen.rps.map((r) => r.rp),
    expired: gen.stats.expired,
    mapsWritten: gen.stats.mapsWritten,
    segmentsRewritten: gen.stats.segmentsRewritten,
    bytesRewritten: gen.stats.bytesRewritten,
    segmentsWritten: gen.written.length,
    shards: journal.shards.length,
    garbageDeleted,
    garbagePending: gen.garbage.length,
    durationMs: Date.now() - t0,
  };
}

/** The whole compaction in this process, every stage in turn, under the lease. */
export async function compactSafe(
  store: ObjectStore,
  safe: string,
  s: CompactionSettings,
): Promise<CompactionResult> {
  const t0 = Date.now();
  const now = s.now ?? (() => new Date());
  const lease = s.lease ?? new ObjectStoreLease(store, safe, s.owner, COMPACTION_DEFAULTS.leaseMs, now);
  await lease.acquire();
  try {
    const begun = await beginCompaction(store, safe, s);
    const nothing = async (garbageDeleted: number, garbagePending: number): Promise<CompactionResult> => ({
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
      durationMs: Date.now() - t0,
    });
    if (begun.kind === 'nothing') return nothing(begun.garbageDeleted, begun.garbagePending);
    const { journal } = begun;
    for (let i = 0; i < journal.shards.length; i++) await shardLiveness(store, safe, journal, i);
    const plan = await selectRewrite(store, safe, journal, s.segmentBytes);
    if (!plan) {
      await cleanUpAttempt(store, safe, journal.generation);
      s.log?.('nothing to compact');
      const gen = await new SafeReader(store, safe).generation();
      return nothing(journal.deleted.length, gen ? gen.garbage.length - journal.deleted.length : 0);
    }
    for (let o = 0; o < plan.outputs.length; o++) {
      const r = await rewriteOutput(store, safe, plan, o);
      s.log?.(`wrote segment ${plan.outputs[o]!.id.slice(0, 12)} (${r.frames} frames, ${r.bytes} bytes)`);
    }
    for (let i = 0; i < journal.shards.length; i++) await shardMaps(store, safe, journal, plan, i);
    const result = await finishCompaction(store, safe, journal, plan, s);
    return { ...result, durationMs: Date.now() - t0 };
  } finally {
    await lease.release().catch(() => undefined);
  }
}
