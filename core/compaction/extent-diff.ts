/**
 * Extent algebra for compaction: full maps hold data extents only (absent means zero), and the
 * delta between two full maps is computed by one sweep, O(n + m) in extents, never per block.
 */
import { type Extent, overlay } from '../format/block-map.ts';

type DataExtent = Extent & { readonly kind: 'data' };

/** A full map's extents: zero extents dropped (absent means zero). */
export function dataOnly(extents: readonly Extent[]): DataExtent[] {
  return extents.filter((e): e is DataExtent => e.kind === 'data');
}

/** The state after laying `delta` over the full state `state`. */
export function apply(state: readonly Extent[], delta: readonly Extent[]): DataExtent[] {
  return dataOnly(overlay(state, delta));
}

function push(out: Extent[], e: Extent): void {
  const last = out[out.length - 1];
  if (last && last.first + last.count === e.first && last.kind === e.kind) {
    if (e.kind === 'zero') {
      out[out.length - 1] = { ...last, count: last.count + e.count };
      return;
    }
    if (last.kind === 'data' && last.segment === e.segment && last.frame + last.count === e.frame) {
      out[out.length - 1] = { ...last, count: last.count + e.count };
      return;
    }
  }
  out.push(e);
}

/**
 * The delta that turns full state `from` into full state `to`: `to`'s data where its frame differs
 * from `from`'s, and zero extents where `from` has data and `to` has none.
 */
export function diff(from: readonly DataExtent[], to: readonly DataExtent[]): Extent[] {
  const out: Extent[] = [];
  let i = 0;
  let j = 0;
  let pos = 0;
  for (;;) {
    while (i < from.length && from[i]!.first + from[i]!.count <= pos) i++;
    while (j < to.length && to[j]!.first + to[j]!.count <= pos) j++;
    const a = from[i];
    const b = to[j];
    if (!a && !b) break;
    const aIn = a !== undefined && a.first <= pos;
    const bIn = b !== undefined && b.first <= pos;
    if (!aIn && !bIn) {
      pos = Math.min(a?.first ?? Number.POSITIVE_INFINITY, b?.first ?? Number.POSITIVE_INFINITY);
      continue;
    }
    let end = Number.POSITIVE_INFINITY;
    if (a) end = Math.min(end, aIn ? a.first + a.count : a.first);
    if (b) end = Math.min(end, bIn ? b.first + b.count : b.first);
    if (bIn) {
      const frame = b.frame + (pos - b.first);
      const same = aIn && a.segment === b.segment && a.frame + (pos - a.first) === frame;
      if (!same) push(out, { kind: 'data', first: pos, count: end - pos, segment: b.segment, frame });
    } else push(out, { kind: 'zero', first: pos, count: end - pos });
    pos = end;
  }
  return out;
}

/** A run of moved frames: old frames `[first, first+count)` are now `newFirst…` of `segment`. */
export interface MoveRun {
  readonly first: number;
  readonly count: number;
  readonly segment: string;
  readonly newFirst: number;
}

/**
 * The extents with the frames of rewritten segments replaced by their new places, split where a
 * run of frames crosses from one move run to the next. O(extents + runs).
 */
export function remap(extents: readonly Extent[], moves: ReadonlyMap<string, readonly MoveRun[]>): Extent[] {
  const out: Extent[] = [];
  for (const e of extents) {
    const runs = e.kind === 'data' ? moves.get(e.segment) : undefined;
    if (e.kind === 'zero' || !runs) {
      out.push(e);
      continue;
    }
    // runs are ascending by first: find the one holding e.frame
    let lo = 0;
    let hi = runs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (runs[mid]!.first <= e.frame) lo = mid;
      else hi = mid - 1;
    }
    let frame = e.frame;
    let block = e.first;
    let left = e.count;
    for (let i = lo; left > 0; i++) {
      const r = runs[i];
      if (!r || frame < r.first || frame >= r.first + r.count)
        throw new Error(`frame ${frame} of segment ${e.segment} is live but was not moved`);
      const n = Math.min(left, r.first + r.count - frame);
      push(out, {
        kind: 'data',
        first: block,
        count: n,
        segment: r.segment,
        frame: r.newFirst + (frame - r.first),
      });
      frame += n;
      block += n;
      left -= n;
    }
  }
  return out;
}
