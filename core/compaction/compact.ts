/**
 * Compaction of one safe (docs/FORMAT.md §10), the same code onsite (`cdp-agent compact`) and
 * offsite (the compaction Lambda, which fans the rewrite out over invocations):
 *
 *   begin      lease; delete what a crashed attempt at the next generation wrote (its journal
 *              names it); collect garbage past its grace period; plan (plan.ts); if segments need
 *              rewriting, write the journal naming every segment the attempt will write
 *   rewrite    one output segment per call: the live frames of sparse segments, copied as they
 *              are (ciphertext stays ciphertext; no key needed); idempotent
 *   finish     plan again (same view, same inputs → same plan), remap extents of moved frames,
 *              write the maps that changed under gen/<g>/, list what became garbage, and commit
 *              gen/<g>.json with putIfAbsent: the single switch readers see
 *
 * A crash before the commit leaves the old view intact (new objects are unreferenced; the next
 * run deletes them); after it the new view is complete. Garbage is deleted by a later run, after
 * the grace period, and only if nothing references it by then.
 */
import { createHash } from 'node:crypto';
import { CdpError, ConflictError, NotFoundError } from '../errors.ts';
import { encodeBlockMap } from '../format/block-map.ts';
import { FORMAT_VERSION } from '../format/constants.ts';
import {
  decodeJournal,
  encodeJson,
  type Generation,
  type GenerationRp,
  type Journal,
  type StoredPolicy,
} from '../format/generation.ts';
import {
  generationKey,
  generationMapKey,
  generationWorkPrefix,
  journalKey,
  manifestKey,
  segmentKey,
} from '../keys.ts';
import type { ObjectStore } from '../ports/object-store.ts';
import { SafeReader } from '../safe-reader.ts';
import { collectGarbage } from './collect-garbage.ts';
import { remap } from './extent-diff.ts';
import { type Lease, ObjectStoreLease } from './lease.ts';
import { type CompactionPlan, planCompaction } from './plan.ts';
import { frameCount, movesOf, planRewrite, writeOutputSegment } from './rewrite-segments.ts';

export interface CompactionSettings {
  readonly policy: StoredPolicy;
  /** Every retained RP restores from one full map plus at most this many deltas. */
  readonly maxDeltas?: number;
  /** A segment is rewritten when its live frames fall below this fraction of its frames. */
  readonly rewriteBelow?: number;
  readonly segmentBytes?: number;
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
  readonly garbageDeleted: number;
  readonly garbagePending: number;
  readonly durationMs: number;
}

export class CompactionError extends CdpError {}

/** Deletes whatever a crashed attempt at generation `g` wrote (its journal names its segments). */
async function cleanUpAttempt(
  store: ObjectStore,
  safe: string,
  g: number,
  log: (m: string) => void,
): Promise<void> {
  const work = await store.list(generationWorkPrefix(safe, g));
  if (work.length === 0) return;
  let outputs: string[] = [];
  try {
    outputs = decodeJournal(await store.get(journalKey(safe, g)), journalKey(safe, g)).outputs.map(
      (o) => o.key,
    );
  } catch (e) {
    if (!(e instanceof NotFoundError)) throw e;
  }
  for (const k of outputs) await store.delete(k);
  for (const o of work) if (o.key !== journalKey(safe, g)) await store.delete(o.key);
  await store.delete(journalKey(safe, g));
  log(`generation ${g}: removed ${outputs.length + work.length} objects of an interrupted attempt`);
}

export type Begun =
  | { readonly kind: 'nothing'; readonly result: CompactionResult }
  | { readonly kind: 'started'; readonly generation: number; readonly journal: Journal };

function settingsOf(s: CompactionSettings) {
  return {
    maxDeltas: s.maxDeltas ?? COMPACTION_DEFAULTS.maxDeltas,
    rewriteBelow: s.rewriteBelow ?? COMPACTION_DEFAULTS.rewriteBelow,
    graceMs: s.graceMs ?? COMPACTION_DEFAULTS.graceMs,
    now: s.now ?? (() => new Date()),
    log: s.log ?? (() => undefined),
  };
}

/** Step 1 (holding the lease): clean up, collect garbage, plan, write the journal. */
export async function beginCompaction(
  store: ObjectStore,
  safe: string,
  s: CompactionSettings,
): Promise<Begun> {
  const t0 = Date.now();
  const { maxDeltas, rewriteBelow, graceMs, now, log } = settingsOf(s);
  const reader = new SafeReader(store, safe);
  if (!(await reader.config()))
    throw new NotFoundError(`safe ${safe} (no safe.json at ${store.location})`, { safe });
  const old = await reader.generation();
  const g = (old?.generation ?? 0) + 1;
  await cleanUpAttempt(store, safe, g, log);
  const gc = await collectGarbage(reader, old, now(), graceMs);
  if (gc.deleted.length > 0) log(`deleted ${gc.deleted.length} objects past their grace period`);
  const plan = await planCompaction(
    reader,
    { policy: s.policy, maxDeltas, rewriteBelow },
    async () => undefined,
  );
  const outputs = plan
    ? planRewrite(safe, plan.sparse, s.segmentBytes ?? COMPACTION_DEFAULTS.segmentBytes)
    : [];
  const dead = plan ? [...plan.oldSegments].filter((x) => !plan.liveSegments.has(x)) : [];
  const newMaps = plan ? plan.kept.flatMap((r) => r.devices).filter((d) => !d.ref).length : 0;
  if (!plan || (plan.expired.length === 0 && outputs.length === 0 && newMaps === 0 && dead.length === 0)) {
    log('nothing to compact');
    return {
      kind: 'nothing',
      result: {
        generation: null,
        kept: plan?.kept.map((r) => r.rp) ?? [],
        expired: [],
        mapsWritten: 0,
        segmentsRewritten: 0,
        bytesRewritten: 0,
        segmentsWritten: 0,
        garbageDeleted: gc.deleted.length,
        garbagePending: gc.kept,
        durationMs: Date.now() - t0,
      },
    };
  }
  const journal: Journal = {
    format: 'cdp-journal',
    version: FORMAT_VERSION,
    generation: g,
    startedAt: now().toISOString(),
    owner: s.owner,
    upTo: plan.upTo,
    policy: s.policy,
    maxDeltas,
    rewriteBelow,
    deleted: gc.deleted.slice(),
    outputs: outputs.map((o) => ({
      id: o.id,
      key: o.key,
      sources: o.sources.map((x) => ({
        segment: x.segment,
        live: x.live.map(([f, c]) => [f, c] as [number, number]),
      })),
    })),
  };
  if (!(await store.putIfAbsent(journalKey(safe, g), encodeJson(journal))))
    throw new ConflictError(`compaction journal of generation ${g}`, { safe });
  return { kind: 'started', generation: g, journal };
}

/** Step 2, once per output segment (any invocation, any order, repeatable). */
export async function rewriteOutput(
  store: ObjectStore,
  safe: string,
  journal: Journal,
  index: number,
): Promise<{ bytes: number; frames: number }> {
  const o = journal.outputs[index];
  if (!o) throw new CompactionError('E_BAD_INPUT', `generation ${journal.generation} has no output ${index}`);
  const done = await store.head(o.key);
  if (done) return { bytes: done.size, frames: o.sources.reduce((n, x) => n + frameCount(x.live), 0) };
  const reader = new SafeReader(store, safe);
  const config = await reader.config();
  const sources = await Promise.all(
    o.sources.map(async (x) => ({ ...x, entries: await reader.segmentEntries(x.segment) })),
  );
  return writeOutputSegment(store, safe, { key: o.key, sources }, config?.encryption != null);
}

export async function readJournal(store: ObjectStore, safe: string, g: number): Promise<Journal> {
  return decodeJournal(await store.get(journalKey(safe, g)), journalKey(safe, g));
}

/** Step 3: plan again, write the changed maps, commit the generation. */
export async function finishCompaction(
  store: ObjectStore,
  safe: string,
  journal: Journal,
  s: Pick<CompactionSettings, 'now' | 'log'> = {},
): Promise<CompactionResult> {
  const t0 = Date.now();
  const now = s.now ?? (() => new Date());
  const log = s.log ?? (() => undefined);
  const g = journal.generation;
  const reader = new SafeReader(store, safe);
  const old = await reader.generation();
  if ((old?.generation ?? 0) >= g) {
    if (old?.generation === g) return resultOf(old, 0, t0); // a duplicate finisher: already done
    throw new ConflictError(`generation ${g}`, { safe });
  }
  const written: Generation['written'] = [];
  for (const o of journal.outputs) {
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
  const moves = movesOf(journal.outputs);
  let mapsWritten = 0;
  // one device at a time: remap what moved, write the maps that changed, keep only their refs
  const plan = (await planCompaction(
    reader,
    {
      policy: journal.policy,
      maxDeltas: journal.maxDeltas,
      rewriteBelow: journal.rewriteBelow,
      upTo: journal.upTo,
      findSparse: false,
    },
    async (_device, maps) => {
      for (const { rp, map: d } of maps) {
        if (d.extents.some((e) => e.kind === 'data' && moves.has(e.segment))) {
          d.extents = remap(d.extents, moves);
          d.ref = undefined;
        }
        if (d.ref) continue;
        const buf = encodeBlockMap({ blockSize: d.blockSize, deviceSize: d.sizeBytes, extents: d.extents });
        const key = generationMapKey(safe, g, rp, d.id);
        await store.put(key, buf);
        mapsWritten++;
        d.ref = {
          key,
          bytes: buf.length,
          sha256: createHash('sha256').update(buf).digest('hex'),
          extents: d.extents.length,
        };
      }
    },
  )) as CompactionPlan;
  const rps: GenerationRp[] = plan.kept.map((p) => ({
    rp: p.rp,
    createdAt: p.createdAt,
    parent: p.parent,
    devices: p.devices.map((d) => ({
      id: d.id,
      sizeBytes: d.sizeBytes,
      blockSize: d.blockSize,
      full: d.full,
      blockMap: d.ref!,
    })),
  }));
  const segments = new Set([...plan.liveSegments].filter((x) => !moves.has(x)));
  for (const o of journal.outputs) segments.add(o.id);

  // garbage: what the old view referenced and the new one does not, plus what is still pending
  const newRefs = new Set<string>();
  for (const r of rps) {
    newRefs.add(manifestKey(safe, r.rp));
    for (const d of r.devices) newRefs.add(d.blockMap.key);
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
  for (const rp of plan.expired) add(manifestKey(safe, rp));
  for (const k of plan.oldRefs) add(k);
  for (const x of plan.oldSegments) add(segmentKey(safe, x));
  if (old) add(generationKey(safe, old.generation));
  add(journalKey(safe, g));
  const gen: Generation = {
    format: 'cdp-generation',
    version: FORMAT_VERSION,
    safe,
    generation: g,
    previous: old?.generation ?? null,
    createdAt: since,
    upTo: plan.upTo,
    maxDeltas: journal.maxDeltas,
    policy: journal.policy,
    rps,
    segments: [...segments].sort(),
    written,
    garbage: [...garbage].map(([key, at]) => ({ key, since: at })),
    stats: {
      expired: plan.expired.slice(),
      mapsWritten,
      segmentsRewritten: journal.outputs.reduce((n, o) => n + o.sources.length, 0),
      bytesRewritten: written.reduce((n, w) => n + w.bytes, 0),
      durationMs: Date.now() - Date.parse(journal.startedAt),
    },
  };
  if (!(await store.putIfAbsent(generationKey(safe, g), encodeJson(gen)))) {
    const raced = await new SafeReader(store, safe).generation();
    if (raced?.generation === g) return resultOf(raced, journal.deleted.length, t0);
    throw new ConflictError(`generation ${g}`, { safe });
  }
  log(
    `generation ${g}: kept ${rps.length} RPs, merged ${plan.expired.length}, wrote ${mapsWritten} maps, ` +
      `rewrote ${gen.stats.segmentsRewritten} segments into ${written.length}`,
  );
  return resultOf(gen, journal.deleted.length, t0);
}

function resultOf(gen: Generation, garbageDeleted: number, t0: number): CompactionResult {
  return {
    generation: gen.generation,
    kept: gen.rps.map((r) => r.rp),
    expired: gen.stats.expired,
    mapsWritten: gen.stats.mapsWritten,
    segmentsRewritten: gen.stats.segmentsRewritten,
    bytesRewritten: gen.stats.bytesRewritten,
    segmentsWritten: gen.written.length,
    garbageDeleted,
    garbagePending: gen.garbage.length,
    durationMs: Date.now() - t0,
  };
}

/** The whole compaction in this process: begin, every rewrite, finish, under the lease. */
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
    if (begun.kind === 'nothing') return begun.result;
    for (let i = 0; i < begun.journal.outputs.length; i++) {
      const r = await rewriteOutput(store, safe, begun.journal, i);
      s.log?.(
        `wrote segment ${begun.journal.outputs[i]!.id.slice(0, 12)} (${r.frames} frames, ${r.bytes} bytes)`,
      );
    }
    const result = await finishCompaction(store, safe, begun.journal, s);
    return { ...result, durationMs: Date.now() - t0 };
  } finally {
    await lease.release().catch(() => undefined);
  }
}
