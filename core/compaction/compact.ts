/**
 * Compaction of one safe (docs/FORMAT.md §10), the same code onsite (`cdp-agent compact`) and
 * offsite (the compaction Lambda):
 *
 *   1. lease            one compactor per safe (lock.json, or the catalog's lease offsite)
 *   2. clean up         a crashed attempt at the next generation: delete what its journal names
 *   3. collect garbage  of the current generation whose grace period has passed
 *   4. plan             retention over the current view; walk every device's maps oldest first,
 *                       building the full state at each RP (extents, never blocks); each retained
 *                       RP becomes a delta over the previous retained one, or a synthetic full
 *                       every `maxDeltas + 1` links (the chain bound)
 *   5. journal          name every segment this attempt may write
 *   6. rewrite          segments whose live bytes fall below `rewriteBelow`, into dense ones
 *   7. maps             write the maps that changed under gen/<g>/
 *   8. commit           gen/<g>.json with putIfAbsent: the single switch readers see
 *
 * A crash before 8 leaves the old view intact (new objects are unreferenced; the next run deletes
 * them); after 8 the new view is complete. Objects the new view stops referencing become garbage,
 * deleted by a later run after the grace period. Never needs the encryption key.
 */
import { createHash } from 'node:crypto';
import { mapLimit } from '../concurrency.ts';
import { CdpError, ConflictError, NotFoundError } from '../errors.ts';
import { type Extent, encodeBlockMap } from '../format/block-map.ts';
import { FORMAT_VERSION } from '../format/constants.ts';
import {
  type BlockMapRef,
  decodeJournal,
  encodeJson,
  type Generation,
  type GenerationRp,
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
import { planRetention } from '../retention.ts';
import { type ChainLink, SafeReader } from '../safe-reader.ts';
import { collectGarbage } from './collect-garbage.ts';
import { apply, dataOnly, diff, type FrameMove, remap } from './extent-diff.ts';
import { type Lease, ObjectStoreLease } from './lease.ts';
import { type LiveSegment, planRewrite, writeOutputSegment } from './rewrite-segments.ts';

export interface CompactionSettings {
  readonly policy: StoredPolicy;
  /** Every retained RP restores from one full map plus at most this many deltas. */
  readonly maxDeltas?: number;
  /** A segment is rewritten when its live bytes fall below this fraction. */
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

interface NewDevice {
  readonly id: string;
  readonly sizeBytes: number;
  readonly blockSize: number;
  readonly full: boolean;
  extents: Extent[];
  /** Reused as is when nothing about it changed. */
  ref: BlockMapRef | undefined;
}

/** A segment id → ascending live frame ranges, from every retained map. */
class Liveness {
  private readonly frames = new Map<string, Set<number>>();
  add(extents: readonly Extent[]): void {
    for (const e of extents) {
      if (e.kind !== 'data') continue;
      let s = this.frames.get(e.segment);
      if (!s) {
        s = new Set();
        this.frames.set(e.segment, s);
      }
      for (let i = 0; i < e.count; i++) s.add(e.frame + i);
    }
  }
  segments(): string[] {
    return [...this.frames.keys()];
  }
  live(segment: string): number[] {
    return [...(this.frames.get(segment) ?? [])].sort((a, b) => a - b);
  }
}

export class CompactionError extends CdpError {}

/** Deletes whatever a crashed attempt at generation `g` wrote (its journal names its segments). */
async function cleanUpAttempt(
  store: ObjectStore,
  safe: string,
  g: number,
  log: (m: string) => void,
): Promise<number> {
  const work = await store.list(generationWorkPrefix(safe, g));
  if (work.length === 0) return 0;
  let segments: string[] = [];
  try {
    segments = decodeJournal(await store.get(journalKey(safe, g)), journalKey(safe, g)).segments;
  } catch (e) {
    if (!(e instanceof NotFoundError)) throw e;
  }
  for (const k of segments) await store.delete(k);
  for (const o of work) if (o.key !== journalKey(safe, g)) await store.delete(o.key);
  await store.delete(journalKey(safe, g));
  log(`generation ${g}: removed ${segments.length + work.length} objects of an interrupted attempt`);
  return segments.length + work.length;
}

export async function compactSafe(
  store: ObjectStore,
  safe: string,
  s: CompactionSettings,
): Promise<CompactionResult> {
  const t0 = Date.now();
  const now = s.now ?? (() => new Date());
  const log = s.log ?? (() => undefined);
  const maxDeltas = s.maxDeltas ?? COMPACTION_DEFAULTS.maxDeltas;
  const rewriteBelow = s.rewriteBelow ?? COMPACTION_DEFAULTS.rewriteBelow;
  const graceMs = s.graceMs ?? COMPACTION_DEFAULTS.graceMs;
  const lease = s.lease ?? new ObjectStoreLease(store, safe, s.owner, COMPACTION_DEFAULTS.leaseMs, now);
  await lease.acquire();
  try {
    const reader = new SafeReader(store, safe);
    const config = await reader.config();
    if (!config) throw new NotFoundError(`safe ${safe} (no safe.json at ${store.location})`, { safe });
    const old = await reader.generation();
    const g = (old?.generation ?? 0) + 1;
    await cleanUpAttempt(store, safe, g, log);
    const gc = await collectGarbage(reader, old, now(), graceMs);
    const deleted = new Set(gc.deleted);
    if (gc.deleted.length > 0) log(`deleted ${gc.deleted.length} objects past their grace period`);

    // ---- plan ------------------------------------------------------------------------------
    const rps = await reader.listRps();
    const empty = {
      generation: null,
      kept: rps,
      expired: [],
      mapsWritten: 0,
      segmentsRewritten: 0,
      bytesRewritten: 0,
      segmentsWritten: 0,
      garbageDeleted: gc.deleted.length,
      garbagePending: gc.kept,
    };
    if (rps.length === 0) return { ...empty, durationMs: Date.now() - t0 };
    const oldEntries = new Map((old?.rps ?? []).map((r) => [r.rp, r]));
    const info = await mapLimit(rps, 8, async (rp) => {
      const e = oldEntries.get(rp);
      if (e) return { rp, createdAt: e.createdAt, parent: e.parent, devices: e.devices.map((d) => d.id) };
      const m = await reader.manifest(rp);
      return { rp, createdAt: m.createdAt, parent: m.parent, devices: m.devices.map((d) => d.id) };
    });
    const locked = new Set(s.policy.locked);
    const { last, hourly, daily, weekly, monthly } = s.policy;
    const plan = planRetention(
      info.map((r) => ({ rp: r.rp, createdAt: r.createdAt, locked: locked.has(r.rp) })),
      { last, hourly, daily, weekly, monthly },
    );
    const keep = new Set(plan.keep.map((k) => k.rp));
    const upTo = rps[rps.length - 1]!;
    const keptInOrder = rps.filter((r) => keep.has(r));
    const parentOf = new Map(keptInOrder.map((r, i) => [r, i > 0 ? keptInOrder[i - 1]! : null]));

    const newDevices = new Map<number, NewDevice[]>(keptInOrder.map((r) => [r, []]));
    const oldRefs = new Set<string>();
    const oldSegments = new Set<string>();
    const deviceIds = [...new Set(info.flatMap((r) => r.devices))];
    for (const device of deviceIds) {
      let state: ReturnType<typeof dataOnly> = [];
      let prevKept: { rp: number; state: typeof state; depth: number } | undefined;
      for (const r of info) {
        if (!r.devices.includes(device)) {
          state = [];
          prevKept = undefined;
          continue;
        }
        const link = (await reader.chain(r.rp, device)).at(-1) as ChainLink;
        oldRefs.add(link.ref.key);
        const map = await reader.blockMap(link, device);
        for (const e of map.extents) if (e.kind === 'data') oldSegments.add(e.segment);
        state = link.full ? dataOnly(map.extents) : apply(state, map.extents);
        if (!keep.has(r.rp)) continue;
        const parent = parentOf.get(r.rp) ?? null;
        const chained = prevKept !== undefined && prevKept.rp === parent && prevKept.depth < maxDeltas;
        const full = !chained;
        const oldParent = oldEntries.get(r.rp)?.parent ?? r.parent;
        const reusable = link.full === full && (full || oldParent === parent);
        const extents = full ? state : diff(prevKept!.state, state);
        newDevices.get(r.rp)!.push({
          id: device,
          sizeBytes: map.deviceSize,
          blockSize: map.blockSize,
          full,
          extents: reusable ? [...map.extents] : extents,
          ref: reusable ? link.ref : undefined,
        });
        prevKept = { rp: r.rp, state, depth: full ? 0 : prevKept!.depth + 1 };
      }
    }

    // ---- liveness and rewrite plan -------------------------------------------------------
    const liveness = new Liveness();
    for (const list of newDevices.values()) for (const d of list) liveness.add(d.extents);
    const liveSegments = liveness.segments();
    const sparse: LiveSegment[] = [];
    await mapLimit(liveSegments, 8, async (segment) => {
      const entries = await reader.segmentEntries(segment);
      const live = liveness.live(segment);
      const total = entries.reduce((n, e) => n + e.frameLength, 0);
      const liveBytes = live.reduce((n, f) => n + entries[f]!.frameLength, 0);
      if (liveBytes < total * rewriteBelow) sparse.push({ segment, entries, live });
    });
    sparse.sort((a, b) => a.segment.localeCompare(b.segment));
    const outputs = planRewrite(safe, sparse, s.segmentBytes ?? COMPACTION_DEFAULTS.segmentBytes);
    const liveSet = new Set(liveSegments);
    const dead = [...oldSegments].filter((x) => !liveSet.has(x));
    const mapsToWrite = [...newDevices.values()].flat().filter((d) => !d.ref).length;
    if (plan.expire.length === 0 && outputs.length === 0 && mapsToWrite === 0 && dead.length === 0) {
      log('nothing to compact');
      return { ...empty, durationMs: Date.now() - t0 };
    }

    // ---- journal, rewrite, maps ---------------------------------------------------------
    const journal = encodeJson({
      format: 'cdp-journal',
      version: FORMAT_VERSION,
      generation: g,
      startedAt: now().toISOString(),
      owner: s.owner,
      segments: outputs.map((o) => o.key),
    });
    if (!(await store.putIfAbsent(journalKey(safe, g), journal)))
      throw new ConflictError(`compaction journal of generation ${g}`, { safe });
    const moves = new Map<string, Map<number, FrameMove>>();
    const written: Generation['written'] = [];
    let bytesRewritten = 0;
    for (const o of outputs) {
      const r = await writeOutputSegment(store, safe, o, config.encryption !== null);
      for (const [k, v] of r.moves) moves.set(k, v);
      written.push({ id: o.id, key: o.key, bytes: r.bytes, frames: r.frames });
      bytesRewritten += r.bytes;
      log(`rewrote ${o.sources.length} sparse segments into ${o.id.slice(0, 12)} (${r.bytes} bytes)`);
    }
    let mapsWritten = 0;
    const rpsOut: GenerationRp[] = [];
    for (const rp of keptInOrder) {
      const devices: GenerationRp['devices'] = [];
      for (const d of newDevices.get(rp)!) {
        if (d.extents.some((e) => e.kind === 'data' && moves.has(e.segment))) {
          d.extents = remap(d.extents, moves);
          d.ref = undefined;
        }
        if (!d.ref) {
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
        devices.push({
          id: d.id,
          sizeBytes: d.sizeBytes,
          blockSize: d.blockSize,
          full: d.full,
          blockMap: d.ref,
        });
      }
      const i = info.find((x) => x.rp === rp)!;
      rpsOut.push({ rp, createdAt: i.createdAt, parent: parentOf.get(rp) ?? null, devices });
    }

    // ---- garbage and commit -------------------------------------------------------------
    const newRefs = new Set<string>();
    const segments = new Set<string>();
    for (const r of rpsOut) {
      newRefs.add(manifestKey(safe, r.rp));
      for (const d of r.devices) newRefs.add(d.blockMap.key);
    }
    for (const list of newDevices.values())
      for (const d of list) for (const e of d.extents) if (e.kind === 'data') segments.add(e.segment);
    const since = now().toISOString();
    const garbage = new Map<string, string>();
    const stillNeeded = (key: string): boolean =>
      newRefs.has(key) || [...segments].some((x) => segmentKey(safe, x) === key);
    for (const gb of old?.garbage ?? [])
      if (!deleted.has(gb.key) && !stillNeeded(gb.key)) garbage.set(gb.key, gb.since);
    const add = (key: string): void => {
      if (!garbage.has(key)) garbage.set(key, since);
    };
    for (const rp of plan.expire) add(manifestKey(safe, rp));
    for (const k of oldRefs) if (!newRefs.has(k)) add(k);
    for (const seg of oldSegments) if (!segments.has(seg)) add(segmentKey(safe, seg));
    if (old) add(generationKey(safe, old.generation));
    add(journalKey(safe, g));
    const gen: Generation = {
      format: 'cdp-generation',
      version: FORMAT_VERSION,
      safe,
      generation: g,
      previous: old?.generation ?? null,
      createdAt: since,
      upTo,
      maxDeltas,
      policy: s.policy,
      rps: rpsOut,
      segments: [...segments].sort(),
      written,
      garbage: [...garbage].map(([key, at]) => ({ key, since: at })),
      stats: {
        expired: plan.expire.slice(),
        mapsWritten,
        segmentsRewritten: sparse.length,
        bytesRewritten,
        durationMs: Date.now() - t0,
      },
    };
    if (!(await store.putIfAbsent(generationKey(safe, g), encodeJson(gen))))
      throw new ConflictError(`generation ${g}`, { safe });
    log(
      `generation ${g}: kept ${keptInOrder.length} RPs, expired ${plan.expire.length}, wrote ${mapsWritten} maps, ` +
        `rewrote ${sparse.length} segments into ${outputs.length}`,
    );
    return {
      generation: g,
      kept: keptInOrder,
      expired: plan.expire,
      mapsWritten,
      segmentsRewritten: sparse.length,
      bytesRewritten,
      segmentsWritten: outputs.length,
      garbageDeleted: gc.deleted.length,
      garbagePending: gen.garbage.length,
      durationMs: Date.now() - t0,
    };
  } finally {
    await lease.release().catch(() => undefined);
  }
}
