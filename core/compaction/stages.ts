/**
 * The middle stages of a compaction attempt (docs/FORMAT.md §9a.5), each idempotent and each
 * writing only under its attempt's folder or to the output segments its plan names:
 *
 *   liveness  per shard: walk the device's maps clipped to the shard, write the frame ranges its
 *             retained maps reference (`live-<i>.json`)
 *   select    merge the shards' liveness, pick sparse segments, plan the output segments
 *             (`rewrite.json`); or find there is nothing to do
 *   rewrite   per output segment: copy the live frames, byte for byte (no key needed)
 *   maps      per shard: plan again, remap moved frames, write the shard's part of every map that
 *             changed (`maps-<i>.json` lists them)
 *
 * Every object is created with putIfAbsent: a repeated task of the same attempt finds its own
 * (deterministic) result and keeps it; nothing is ever replaced.
 */
import { createHash } from 'node:crypto';
import { readDamagedFrames, recordDamage } from '../damage.ts';
import { encodeBlockMap } from '../format/block-map.ts';
import { FORMAT_VERSION } from '../format/constants.ts';
import {
  type BlockMapRef,
  decodeRewritePlan,
  type Journal,
  type RewritePlan,
  type ShardLiveness,
  type ShardMaps,
  shardLivenessSchema,
} from '../format/generation.ts';
import { decodeVersionedJson, encodeJson } from '../format/manifest.ts';
import { generationMapKey, generationMapPartKey, generationWorkPrefix } from '../keys.ts';
import type { ObjectStore } from '../ports/object-store.ts';
import { SafeReader } from '../safe-reader.ts';
import { allPresent, attemptOf, COMPACTION_DEFAULTS, CompactionError, readJson, workKey } from './attempt.ts';
import { referencedKeys, UnreadableRpError } from './collect-garbage.ts';
import { remap } from './extent-diff.ts';
import { collectableKeys, orphansOf } from './orphans.ts';
import { findSparse, mergeRanges, planShard, retentionOf } from './plan.ts';
import { frameCount, movesOf, planRewrite, writeOutputSegment } from './rewrite-segments.ts';

export async function viewOf(reader: SafeReader, journal: Journal) {
  const view = await retentionOf(reader, journal.policy, journal.upTo);
  if (!view)
    throw new CompactionError(
      'E_SAFE_FORMAT',
      `generation ${journal.generation}: the safe has no RPs any more`,
    );
  return view;
}

/** Creates `key` once; a repeated task finds its own earlier result there (same bytes) and keeps it. */
async function createOnce(store: ObjectStore, key: string, body: Buffer): Promise<void> {
  if (await store.putIfAbsent(key, body)) return;
  const there = await store.get(key);
  if (!there.equals(body))
    throw new CompactionError(
      'E_CONFLICT',
      `${key} exists with other content: another writer used this attempt's name`,
    );
}

/** Stage liveness, shard `i`: the frame ranges its retained maps reference, and what the old view referenced. */
export async function shardLiveness(
  store: ObjectStore,
  safe: string,
  journal: Journal,
  i: number,
): Promise<void> {
  const key = workKey(safe, journal, `live-${i}`);
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
  await createOnce(store, key, encodeJson(out));
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
    journal.shards.map((_, i) => workKey(safe, journal, `${stage}-${i}`)),
  );
}

/** Objects nothing references that are not garbage yet (left by killed runs), or undefined when that cannot be known. */
export async function orphanKeys(
  store: ObjectStore,
  safe: string,
  journal: Journal,
  extraRefs: ReadonlySet<string> = new Set(),
): Promise<string[] | undefined> {
  const listed = await collectableKeys(store, safe);
  const reader = new SafeReader(store, safe);
  const gen = await reader.generation();
  let refs: Set<string>;
  try {
    refs = await referencedKeys(reader, gen);
  } catch (e) {
    if (e instanceof UnreadableRpError) return undefined;
    throw e;
  }
  for (const k of extraRefs) refs.add(k);
  const own = generationWorkPrefix(safe, journal.generation, attemptOf(journal));
  return orphansOf(listed, refs, gen, (k) => k.startsWith(own));
}

/** Stage select: merge liveness, choose the output segments; undefined when there is nothing to do. */
export async function selectRewrite(
  store: ObjectStore,
  safe: string,
  journal: Journal,
  segmentBytes: number = COMPACTION_DEFAULTS.segmentBytes,
): Promise<RewritePlan | undefined> {
  const g = journal.generation;
  const existing = await readJson(store, workKey(safe, journal, 'rewrite'), decodeRewritePlan);
  if (existing) return existing;
  const merged = new Map<string, [number, number][]>();
  const oldSegments = new Set<string>();
  let changes = 0;
  for (let i = 0; i < journal.shards.length; i++) {
    const key = workKey(safe, journal, `live-${i}`);
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
  const idle = journal.expired.length === 0 && sparse.length === 0 && changes === 0 && dead.length === 0;
  if (idle && ((await orphanKeys(store, safe, journal))?.length ?? 0) === 0) return undefined;
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
  const key = workKey(safe, journal, 'rewrite');
  if (!(await store.putIfAbsent(key, encodeJson(plan)))) return decodeRewritePlan(await store.get(key), key);
  return plan;
}

/**
 * Stage rewrite, output `index` (any invocation, any order, repeatable). Damage recorded for a
 * frame it copies is recorded for the copy too (under the attempt's id), so the next backup still
 * stores that block again from the device.
 */
export async function rewriteOutput(
  store: ObjectStore,
  safe: string,
  plan: RewritePlan,
  index: number,
  attempt: string,
): Promise<{ bytes: number; frames: number }> {
  const o = plan.outputs[index];
  if (!o) throw new CompactionError('E_BAD_INPUT', `generation ${plan.generation} has no output ${index}`);
  const frames = o.sources.reduce((n, x) => n + frameCount(x.live), 0);
  let written: { bytes: number; frames: number };
  const done = await store.head(o.key);
  if (done) written = { bytes: done.size, frames };
  else {
    const reader = new SafeReader(store, safe);
    const config = await reader.config();
    const sources = await Promise.all(
      o.sources.map(async (x) => ({ ...x, entries: await reader.segmentEntries(x.segment) })),
    );
    written = await writeOutputSegment(
      store,
      safe,
      { id: o.id, key: o.key, sources },
      config?.encryption != null,
    );
  }
  await carryDamage(store, safe, plan, index, attempt);
  return written;
}

/** Records, for output `index`, the damaged frames of its sources that it copied. */
async function carryDamage(
  store: ObjectStore,
  safe: string,
  plan: RewritePlan,
  index: number,
  attempt: string,
) {
  const damaged = await readDamagedFrames(store, safe);
  const o = plan.outputs[index]!;
  const moves = movesOf([o]);
  const frames: { first: number; count: number; reason: string }[] = [];
  for (const src of o.sources) {
    for (const [bad, n] of damaged.of(src.segment))
      for (const run of moves.get(src.segment) ?? []) {
        const a = Math.max(bad, run.first);
        const b = Math.min(bad + n, run.first + run.count);
        if (a < b)
          frames.push({
            first: run.newFirst + (a - run.first),
            count: b - a,
            reason: `copied by compaction (generation ${plan.generation}) from frame ${a} of segment ${src.segment}, recorded damaged`,
          });
      }
  }
  if (frames.length === 0) return;
  await recordDamage(store, safe, attempt, {
    segment: o.id,
    frames,
    foundAt: new Date().toISOString(),
    foundBy: `compaction attempt ${attempt}`,
  });
}

export function rewritesDone(store: ObjectStore, plan: RewritePlan): Promise<boolean> {
  return allPresent(
    store,
    plan.outputs.map((o) => o.key),
  );
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
  const attempt = attemptOf(journal);
  const key = workKey(safe, journal, `maps-${i}`);
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
      ? generationMapKey(safe, g, attempt, rp, map.id)
      : generationMapPartKey(safe, g, attempt, rp, map.id, shard.first);
    await createOnce(store, mapKey, buf);
    const ref: BlockMapRef = {
      key: mapKey,
      bytes: buf.length,
      sha256: createHash('sha256').update(buf).digest('hex'),
      extents: extents.length,
    };
    out.maps.push(wholeShard ? { ...base, whole: ref } : { ...base, part: ref });
  }
  await createOnce(store, key, encodeJson(out));
}
