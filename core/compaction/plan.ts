/**
 * Compaction planning (pure over the safe's current view; reads maps and segment footers, never
 * block data): which RPs the policy keeps, the map of every retained RP in the new generation (a
 * delta over the previous retained RP, or a synthetic full every `maxDeltas + 1` links), and the
 * segments whose live frames fall below `rewriteBelow` of their frames. Deterministic for a given view, policy and
 * `upTo`, so the finalizer of a fanned-out compaction can plan again and get the same result.
 */

import { mapLimit } from '../concurrency.ts';
import type { Extent } from '../format/block-map.ts';
import type { BlockMapRef, Generation, StoredPolicy } from '../format/generation.ts';
import { planRetention } from '../retention.ts';
import type { ChainLink, SafeReader } from '../safe-reader.ts';
import { apply, dataOnly, diff } from './extent-diff.ts';
import { frameCount, type SparseSegment } from './rewrite-segments.ts';

/** Sorts and merges frame ranges [first, count]. */
function mergeRanges(list: [number, number][]): [number, number][] {
  list.sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const [f, c] of list) {
    const last = out[out.length - 1];
    if (last && f <= last[0] + last[1]) last[1] = Math.max(last[1], f + c - last[0]);
    else out.push([f, c]);
  }
  return out;
}

export interface PlannedDevice {
  readonly id: string;
  readonly sizeBytes: number;
  readonly blockSize: number;
  readonly full: boolean;
  /** The map's extents; emptied once the device has been handed to `onDevice`. */
  extents: Extent[];
  /** The existing map, reused as is when nothing about it changes. */
  ref: BlockMapRef | undefined;
}

export interface PlannedRp {
  readonly rp: number;
  readonly createdAt: string;
  readonly parent: number | null;
  readonly devices: PlannedDevice[];
}

export interface CompactionPlan {
  readonly old: Generation | undefined;
  readonly upTo: number;
  readonly kept: readonly PlannedRp[];
  readonly expired: readonly number[];
  /** Keys the current view references at or below upTo (manifests and maps). */
  readonly oldRefs: ReadonlySet<string>;
  readonly oldSegments: ReadonlySet<string>;
  /** Segments the retained maps reference. */
  readonly liveSegments: ReadonlySet<string>;
  readonly sparse: readonly SparseSegment[];
}

export interface PlanSettings {
  readonly policy: StoredPolicy;
  readonly maxDeltas: number;
  readonly rewriteBelow: number;
  /** Plan only RPs up to this one (the finalizer's replay); default: the newest. */
  readonly upTo?: number;
  /** Find the sparse segments (reads every live segment's trailer); the finalizer needs not. */
  readonly findSparse?: boolean;
}

/** Called once per device with its retained maps, oldest first; they are dropped afterwards. */
export type OnDevice = (device: string, maps: readonly { rp: number; map: PlannedDevice }[]) => Promise<void>;

/**
 * Plans one device at a time: memory holds the liveness ranges of the whole safe and the retained
 * maps of one device, never a block index.
 */
export async function planCompaction(
  reader: SafeReader,
  s: PlanSettings,
  onDevice?: OnDevice,
): Promise<CompactionPlan | undefined> {
  const old = await reader.generation();
  const rps = (await reader.listRps()).filter((r) => s.upTo === undefined || r <= s.upTo);
  if (rps.length === 0) return undefined;
  const oldEntries = new Map((old?.rps ?? []).map((r) => [r.rp, r]));
  const info = await mapLimit(rps, 8, async (rp) => {
    const e = oldEntries.get(rp);
    if (e) return { rp, createdAt: e.createdAt, parent: e.parent, devices: e.devices.map((d) => d.id) };
    const m = await reader.manifest(rp);
    return { rp, createdAt: m.createdAt, parent: m.parent, devices: m.devices.map((d) => d.id) };
  });
  const locked = new Set(s.policy.locked);
  const { last, hourly, daily, weekly, monthly } = s.policy;
  const retention = planRetention(
    info.map((r) => ({ rp: r.rp, createdAt: r.createdAt, locked: locked.has(r.rp) })),
    { last, hourly, daily, weekly, monthly },
  );
  const keep = new Set(retention.keep.map((k) => k.rp));
  const keptInfo = info.filter((r) => keep.has(r.rp));
  const parentOf = new Map(keptInfo.map((r, i) => [r.rp, i > 0 ? keptInfo[i - 1]!.rp : null]));
  const kept = new Map<number, PlannedRp>(
    keptInfo.map((r) => [
      r.rp,
      { rp: r.rp, createdAt: r.createdAt, parent: parentOf.get(r.rp)!, devices: [] },
    ]),
  );

  // one device at a time: its full state at each RP, oldest first (extents, never blocks)
  const oldRefs = new Set<string>();
  const oldSegments = new Set<string>();
  const ranges = new Map<string, [number, number][]>();
  for (const device of [...new Set(info.flatMap((r) => r.devices))]) {
    const maps: { rp: number; map: PlannedDevice }[] = [];
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
      const planned = kept.get(r.rp);
      if (!planned) continue;
      const chained =
        prevKept !== undefined && prevKept.rp === planned.parent && prevKept.depth < s.maxDeltas;
      const full = !chained;
      const oldParent = oldEntries.get(r.rp)?.parent ?? r.parent;
      const reusable = link.full === full && (full || oldParent === planned.parent);
      const plannedMap: PlannedDevice = {
        id: device,
        sizeBytes: map.deviceSize,
        blockSize: map.blockSize,
        full,
        extents: reusable ? [...map.extents] : full ? state : diff(prevKept!.state, state),
        ref: reusable ? link.ref : undefined,
      };
      planned.devices.push(plannedMap);
      maps.push({ rp: r.rp, map: plannedMap });
      prevKept = { rp: r.rp, state, depth: full ? 0 : prevKept!.depth + 1 };
    }
    // liveness: the frame ranges this device's retained maps reference, per segment
    for (const { map } of maps)
      for (const e of map.extents) {
        if (e.kind !== 'data') continue;
        let list = ranges.get(e.segment);
        if (!list) {
          list = [];
          ranges.set(e.segment, list);
        }
        list.push([e.frame, e.count]);
      }
    for (const [seg, list] of ranges) ranges.set(seg, mergeRanges(list));
    if (onDevice) {
      await onDevice(device, maps);
      for (const { map } of maps) map.extents = [];
    }
  }

  const sparse: SparseSegment[] = [];
  await mapLimit(s.findSparse === false ? [] : [...ranges.keys()], 8, async (segment) => {
    const live = ranges.get(segment)!;
    const { size, trailer } = await reader.segmentTrailer(segment);
    const liveFrames = frameCount(live);
    if (liveFrames < trailer.frameCount * s.rewriteBelow)
      sparse.push({ segment, live, liveBytes: Math.round((size * liveFrames) / trailer.frameCount) });
  });
  sparse.sort((a, b) => a.segment.localeCompare(b.segment));
  return {
    old,
    upTo: rps[rps.length - 1]!,
    kept: [...kept.values()],
    expired: retention.expire,
    oldRefs,
    oldSegments,
    liveSegments: new Set(ranges.keys()),
    sparse,
  };
}
