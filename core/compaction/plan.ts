/**
 * Compaction planning (over the safe's current view; reads maps and segment trailers, never block
 * data), for one block-range shard of one device at a time or for everything:
 * - retention: which RPs the policy keeps (`retentionOf`, cheap: manifests only);
 * - the map of every retained RP in the new generation: a delta over the previous retained RP, or
 *   a synthetic full every `maxDeltas + 1` links; an existing map is reused when nothing about it
 *   changes (same parent and kind, and none of its segments moved);
 * - liveness: the frame ranges the retained maps reference, per segment.
 * Deterministic for a given view, policy and `upTo`, so later stages (other invocations) plan the
 * same again. Memory: the extents of one shard of one device, never a block index.
 */
import { mapLimit } from '../concurrency.ts';
import type { Extent } from '../format/block-map.ts';
import type { BlockMapRef, Generation, StoredPolicy } from '../format/generation.ts';
import { planRetention } from '../retention.ts';
import type { SafeReader } from '../safe-reader.ts';
import { CompactionError } from './attempt.ts';
import { apply, dataOnly, diff } from './extent-diff.ts';
import { type FrameRanges, frameCount, type SparseSegment } from './rewrite-segments.ts';

/** Sorts and merges frame ranges [first, count]. */
export function mergeRanges(list: [number, number][]): [number, number][] {
  list.sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const [f, c] of list) {
    const last = out[out.length - 1];
    if (last && f <= last[0] + last[1]) last[1] = Math.max(last[1], f + c - last[0]);
    else out.push([f, c]);
  }
  return out;
}

/** The extents within blocks [first, end), cut at the edges. */
export function clip(extents: readonly Extent[], first: number, end: number): Extent[] {
  const out: Extent[] = [];
  for (const e of extents) {
    const a = Math.max(e.first, first);
    const b = Math.min(e.first + e.count, end);
    if (a >= b) continue;
    if (a === e.first && b === e.first + e.count) out.push(e);
    else if (e.kind === 'zero') out.push({ kind: 'zero', first: a, count: b - a });
    else out.push({ ...e, first: a, count: b - a, frame: e.frame + (a - e.first) });
  }
  return out;
}

/** A block range of one device: the unit of sharded planning and map writing. */
export interface Shard {
  readonly device: string;
  readonly first: number;
  readonly end: number;
}

export interface PlannedDevice {
  readonly id: string;
  readonly sizeBytes: number;
  readonly blockSize: number;
  readonly full: boolean;
  /** The map's extents within the shard. */
  readonly extents: Extent[];
  /** An existing map reused as it is: the whole map, or the part covering exactly this shard. */
  readonly reuse: { readonly whole: boolean; readonly ref: BlockMapRef } | undefined;
}

export interface RetentionView {
  readonly old: Generation | undefined;
  readonly upTo: number;
  readonly info: readonly {
    rp: number;
    createdAt: string;
    parent: number | null;
    devices: { id: string; blocks: number }[];
  }[];
  readonly kept: readonly { rp: number; createdAt: string; parent: number | null }[];
  readonly expired: readonly number[];
}

/** Which RPs the policy keeps, from manifests and the current generation only. */
export async function retentionOf(
  reader: SafeReader,
  policy: StoredPolicy,
  upTo?: number,
): Promise<RetentionView | undefined> {
  const old = await reader.generation();
  // the RPs of the current view: what the generation retains (its entry describes it, even if its
  // manifest was lost since) and the manifests after it
  const listed = new Set([...(await reader.listRps()), ...(old?.rps ?? []).map((r) => r.rp)]);
  const rps = [...listed].filter((r) => upTo === undefined || r <= upTo).sort((a, b) => a - b);
  if (rps.length === 0) return undefined;
  const oldEntries = new Map((old?.rps ?? []).map((r) => [r.rp, r]));
  const blocks = (d: { sizeBytes: number; blockSize: number }) => Math.ceil(d.sizeBytes / d.blockSize);
  const info = await mapLimit(rps, 8, async (rp) => {
    const e = oldEntries.get(rp);
    if (e)
      return {
        rp,
        createdAt: e.createdAt,
        parent: e.parent,
        devices: e.devices.map((d) => ({ id: d.id, blocks: blocks(d) })),
      };
    const m = await reader.manifest(rp);
    return {
      rp,
      createdAt: m.createdAt,
      parent: m.parent,
      standalone: m.devices.every((d) => d.full === true),
      devices: m.devices.map((d) => ({ id: d.id, blocks: blocks(d) })),
    };
  });
  // a delta over an RP the view lacks (its manifest lost) would be rebuilt over the RP before it,
  // changing its data: refused, naming it
  info.forEach((r, i) => {
    const before = i > 0 ? info[i - 1]!.rp : null;
    if (r.parent === before || r.parent === null || ('standalone' in r && r.standalone)) return;
    throw new CompactionError(
      'E_SAFE_FORMAT',
      `RP ${r.rp} is a delta over RP ${r.parent}, which the safe does not have (its manifest rp/${String(r.parent).padStart(10, '0')}.json is missing): nothing is compacted, so that RP ${r.rp} keeps its data`,
      { rp: r.rp },
    );
  });
  const locked = new Set(policy.locked);
  const { last, hourly, daily, weekly, monthly } = policy;
  const retention = planRetention(
    info.map((r) => ({ rp: r.rp, createdAt: r.createdAt, locked: locked.has(r.rp) })),
    { last, hourly, daily, weekly, monthly },
  );
  const keep = new Set(retention.keep.map((k) => k.rp));
  const keptInfo = info.filter((r) => keep.has(r.rp));
  return {
    old,
    upTo: rps[rps.length - 1]!,
    info,
    kept: keptInfo.map((r, i) => ({
      rp: r.rp,
      createdAt: r.createdAt,
      parent: i > 0 ? keptInfo[i - 1]!.rp : null,
    })),
    expired: retention.expire,
  };
}

/** Splits every device into shards of at most `shardBlocks` blocks. */
export function shardsOf(view: RetentionView, shardBlocks: number): Shard[] {
  const sizes = new Map<string, number>();
  for (const r of view.info)
    for (const d of r.devices) sizes.set(d.id, Math.max(sizes.get(d.id) ?? 0, d.blocks));
  const out: Shard[] = [];
  for (const [device, blocks] of sizes)
    for (let first = 0; first < Math.max(blocks, 1); first += shardBlocks)
      out.push({ device, first, end: Math.min(first + shardBlocks, Math.max(blocks, 1)) });
  return out;
}

export interface ShardPlan {
  /** Per retained RP (oldest first) that holds the device: its planned map within the shard. */
  readonly maps: readonly { rp: number; map: PlannedDevice }[];
  /** Frame ranges the shard's retained maps reference, per segment (merged). */
  readonly liveness: Map<string, [number, number][]>;
  /** Map keys and segments the current view references within the shard. */
  readonly oldRefs: Set<string>;
  readonly oldSegments: Set<string>;
}

export interface PlanSettings {
  readonly maxDeltas: number;
  /** Segments being rewritten: a map that references one cannot be reused as it is. */
  readonly moved?: ReadonlySet<string>;
}

/** Plans one shard: walks the device's maps oldest first, clipped to the shard. */
export async function planShard(
  reader: SafeReader,
  view: RetentionView,
  shard: Shard,
  s: PlanSettings,
): Promise<ShardPlan> {
  const oldEntries = new Map((view.old?.rps ?? []).map((r) => [r.rp, r]));
  const kept = new Map(view.kept.map((k) => [k.rp, k]));
  const maps: { rp: number; map: PlannedDevice }[] = [];
  const oldRefs = new Set<string>();
  const oldSegments = new Set<string>();
  let state: ReturnType<typeof dataOnly> = [];
  let prevKept: { rp: number; state: typeof state; depth: number } | undefined;
  for (const r of view.info) {
    if (!r.devices.some((d) => d.id === shard.device)) {
      state = [];
      prevKept = undefined;
      continue;
    }
    const { link } = (await reader.link(r.rp, shard.device))!;
    for (const ref of link.refs) oldRefs.add(ref.key);
    const whole = await reader.blockMap(link, shard.device);
    const extents = clip(whole.extents, shard.first, shard.end);
    for (const e of extents) if (e.kind === 'data') oldSegments.add(e.segment);
    state = link.full ? dataOnly(extents) : apply(state, extents);
    const planned = kept.get(r.rp);
    if (!planned) continue;
    const chained = prevKept !== undefined && prevKept.rp === planned.parent && prevKept.depth < s.maxDeltas;
    const full = !chained;
    const oldParent = oldEntries.get(r.rp)?.parent ?? r.parent;
    const moved = s.moved ?? new Set<string>();
    const reusable =
      link.full === full &&
      (full || oldParent === planned.parent) &&
      !whole.extents.some((e) => e.kind === 'data' && moved.has(e.segment));
    maps.push({
      rp: r.rp,
      map: {
        id: shard.device,
        sizeBytes: whole.deviceSize,
        blockSize: whole.blockSize,
        full,
        extents: reusable ? extents : full ? state : diff(prevKept!.state, state),
        reuse: !reusable
          ? undefined
          : !link.ranges
            ? { whole: true, ref: link.refs[0]! }
            : (() => {
                const i = link.ranges.findIndex(([a, b]) => a === shard.first && b === shard.end);
                return i >= 0 ? { whole: false, ref: link.refs[i]! } : undefined;
              })(),
      },
    });
    prevKept = { rp: r.rp, state, depth: full ? 0 : prevKept!.depth + 1 };
  }
  const liveness = new Map<string, [number, number][]>();
  for (const { map } of maps)
    for (const e of map.extents) {
      if (e.kind !== 'data') continue;
      let list = liveness.get(e.segment);
      if (!list) {
        list = [];
        liveness.set(e.segment, list);
      }
      list.push([e.frame, e.count]);
    }
  for (const [seg, list] of liveness) liveness.set(seg, mergeRanges(list));
  return { maps, liveness, oldRefs, oldSegments };
}

/** The segments whose live frames fall below `rewriteBelow` of their frames (one trailer read each). */
export async function findSparse(
  reader: SafeReader,
  liveness: ReadonlyMap<string, FrameRanges>,
  rewriteBelow: number,
): Promise<SparseSegment[]> {
  const sparse: SparseSegment[] = [];
  await mapLimit([...liveness.keys()], 8, async (segment) => {
    const live = liveness.get(segment)!;
    const { size, trailer } = await reader.segmentTrailer(segment);
    const liveFrames = frameCount(live);
    if (liveFrames < trailer.frameCount * rewriteBelow)
      sparse.push({ segment, live, liveBytes: Math.round((size * liveFrames) / trailer.frameCount) });
  });
  return sparse.sort((a, b) => a.segment.localeCompare(b.segment));
}
