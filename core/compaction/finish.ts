/**
 * The last stage of a compaction attempt: assemble the generation from the shards' maps, list the
 * garbage (what the old view referenced and the new one does not, the attempt's own work objects,
 * and orphans: what nothing references), check the lock, and commit gen/<g>.json with putIfAbsent,
 * the single switch readers see. The attempt commits only on the view it planned on.
 */

import { CdpError, ConflictError } from '../errors.ts';
import { FORMAT_VERSION } from '../format/constants.ts';
import {
  decodeGeneration,
  type Generation,
  type GenerationRp,
  type Journal,
  type RewritePlan,
  type ShardMaps,
  shardLivenessSchema,
  shardMapsSchema,
} from '../format/generation.ts';
import { decodeVersionedJson, encodeJson } from '../format/manifest.ts';
import { generationKey, journalKey, manifestKey, parseKey, segmentKey } from '../keys.ts';
import type { HeldLock } from '../locks.ts';
import type { ObjectStore } from '../ports/object-store.ts';
import { SafeReader } from '../safe-reader.ts';
import { attemptOf, CompactionError, type CompactionResult, workKey } from './attempt.ts';
import { condemnedIn, laterRpKeys, UnreadableRpError } from './collect-garbage.ts';
import { collectableKeys, orphansOf } from './orphans.ts';
import { frameCount, movesOf } from './rewrite-segments.ts';

/** Whether a map key is one generation `g` wrote (not one it reuses). */
function writtenBy(key: string, g: number): boolean {
  const k = parseKey(key);
  return k.kind === 'generation-map' && k.generation === g;
}

export function resultOf(
  gen: Generation,
  journal: Journal,
  garbageDeleted: number,
  t0: number,
  notes: readonly string[] = [],
): CompactionResult {
  const g = gen.generation;
  return {
    generation: g,
    kept: gen.rps.map((r) => r.rp),
    expired: gen.stats.expired,
    mapsWritten: gen.stats.mapsWritten,
    segmentsRewritten: gen.stats.segmentsRewritten,
    bytesRewritten: gen.stats.bytesRewritten,
    segmentsWritten: gen.written.length,
    shards: journal.shards.length,
    garbageDeleted,
    garbagePending: gen.garbage.length,
    orphansCondemned: gen.garbage.filter((x) => x.generation === g && x.orphan === true).length,
    notes,
    durationMs: Date.now() - t0,
  };
}

/** Stage finish: assemble the generation from the shards' maps and commit it. */
export async function finishCompaction(
  store: ObjectStore,
  safe: string,
  journal: Journal,
  plan: RewritePlan,
  lock: HeldLock,
  s: { now?: () => Date; log?: (msg: string) => void; notes?: readonly string[] } = {},
): Promise<CompactionResult> {
  const t0 = Date.now();
  const now = s.now ?? (() => new Date());
  const g = journal.generation;
  const attempt = attemptOf(journal);
  // list first: an object written after this listing is not taken for an orphan
  const listed = await collectableKeys(store, safe);
  const reader = new SafeReader(store, safe);
  const old = await reader.generation();
  if ((old?.generation ?? 0) >= g) {
    // a duplicate finisher of this attempt: already done (a generation lists its own journal as
    // garbage; another attempt's journal it lists as an orphan)
    if (old?.generation === g && old.garbage.some((x) => x.key === journalKey(safe, g, attempt) && !x.orphan))
      return resultOf(old, journal, 0, t0, s.notes);
    throw new ConflictError(`generation ${g}`, { safe });
  }
  if (journal.previous !== undefined && (old?.generation ?? null) !== journal.previous)
    throw new ConflictError(
      `generation ${g} (planned on generation ${journal.previous}, now ${old?.generation ?? 'none'})`,
      {
        safe,
      },
    );
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
    const mk = workKey(safe, journal, `maps-${i}`);
    const lk = workKey(safe, journal, `live-${i}`);
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

  // what the new view references, and what the RPs committed after it do
  const newRefs = new Set<string>();
  for (const r of rps) {
    newRefs.add(manifestKey(safe, r.rp));
    for (const d of r.devices) {
      if (d.blockMap) newRefs.add(d.blockMap.key);
      for (const p of d.parts ?? []) newRefs.add(p.blockMap.key);
    }
  }
  for (const x of segments) newRefs.add(segmentKey(safe, x));
  const notes = [...(s.notes ?? [])];
  let later: Set<string> | undefined;
  try {
    later = await laterRpKeys(reader, journal.upTo);
    for (const k of later) newRefs.add(k);
  } catch (e) {
    if (!(e instanceof UnreadableRpError)) throw e;
    notes.push(`${e.message}; objects nothing references are not listed as garbage this time`);
  }

  // garbage: still pending from the old view unless referenced again, plus what this generation retires
  const since = now().toISOString();
  const garbage = new Map<string, Generation['garbage'][number]>();
  const revived: string[] = [];
  const deleted = new Set(journal.deleted);
  // what the old view referenced: the maps and segments of its RPs up to this attempt's upTo (RPs
  // committed after the old generation included, which may have taken up its garbage again)
  const oldView = new Set<string>([...oldRefs, ...[...oldSegments].map((x) => segmentKey(safe, x))]);
  for (const r of [...journal.kept, ...journal.expired.map((rp) => ({ rp }))])
    oldView.add(manifestKey(safe, r.rp));
  for (const gb of old?.garbage ?? []) {
    if (deleted.has(gb.key)) continue;
    if (newRefs.has(gb.key)) {
      const k = parseKey(gb.key);
      if (k.kind === 'segment') revived.push(k.segment);
      continue;
    }
    // garbage the old view used again (a backup took it up before it was condemned) and this view
    // does not: condemned anew by this generation, so readers of the old view keep it
    if (oldView.has(gb.key)) {
      garbage.set(gb.key, { key: gb.key, since, generation: g });
      continue;
    }
    garbage.set(gb.key, { key: gb.key, since: gb.since, generation: condemnedIn(gb, old!) });
  }
  const add = (key: string, orphan = false): void => {
    if (garbage.has(key) || newRefs.has(key)) return;
    garbage.set(key, { key, since, generation: g, ...(orphan ? { orphan: true } : {}) });
  };
  for (const rp of journal.expired) add(manifestKey(safe, rp));
  for (const k of oldRefs) add(k);
  for (const x of oldSegments) add(segmentKey(safe, x));
  if (old) add(generationKey(safe, old.generation));
  for (const k of [...work, workKey(safe, journal, 'rewrite'), journalKey(safe, g, attempt)]) add(k);
  if (later) {
    const mine = new Set([...work, workKey(safe, journal, 'rewrite'), journalKey(safe, g, attempt)]);
    for (const k of orphansOf(listed, newRefs, old, (key) => mine.has(key) || garbage.has(key))) add(k, true);
  }
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
    ...(revived.length > 0 ? { revived: revived.sort() } : {}),
    garbage: [...garbage.values()],
    stats: {
      expired: journal.expired.slice(),
      mapsWritten,
      segmentsRewritten: plan.outputs.reduce((n, o) => n + o.sources.length, 0),
      bytesRewritten: written.reduce((n, w) => n + w.bytes, 0),
      durationMs: Date.now() - Date.parse(journal.startedAt),
    },
  };
  // what readers will refuse is never committed (an attempt's work objects altered since it wrote them)
  const body = encodeJson(gen);
  try {
    decodeGeneration(body, generationKey(safe, g));
  } catch (e) {
    if (!(e instanceof CdpError)) throw e;
    throw new CompactionError(
      'E_SAFE_FORMAT',
      `generation ${g} is not committed, it would be invalid: ${e.message}`,
      {
        safe,
      },
    );
  }
  await lock.check();
  if (!(await store.putIfAbsent(generationKey(safe, g), body))) {
    throw new ConflictError(`generation ${g}`, { safe });
  }
  s.log?.(
    `generation ${g}: kept ${rps.length} RPs, merged ${journal.expired.length}, wrote ${mapsWritten} maps over ` +
      `${journal.shards.length} shards, rewrote ${gen.stats.segmentsRewritten} segments into ${written.length}`,
  );
  return resultOf(gen, journal, journal.deleted.length, t0, notes);
}
