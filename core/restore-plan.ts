/**
 * Restore plans (docs/FORMAT.md "Restore plan"): a device's complete block map at an RP, resolved
 * to byte ranges of segments and coalesced into large ranged reads. A plan is O(extents), never
 * O(blocks): each range lists runs (first block, count, byte offset of its first frame), and the
 * frames of a run are consecutive in the range, so a reader walks them by their headers. Blocks
 * that no data run covers are zero (holes). Plans are paged by block number for huge devices.
 */
import { forEachLimit } from './concurrency.ts';
import type { Extent } from './format/block-map.ts';
import type { SegmentEntry } from './format/segment.ts';
import { segmentKey } from './keys.ts';
import { CorruptBlockError, type ResolvedDevice, type SafeReader } from './safe-reader.ts';

export const PLAN_FORMAT = 'cdp-restore-plan';
export const PLAN_VERSION = 1;

export interface PlanRun {
  readonly first: number;
  readonly count: number;
  /** Byte offset of the run's first frame inside the range. */
  readonly offset: number;
  /** Frame number of the run's first block in the segment's footer index. */
  readonly frame: number;
}

export interface PlanRange {
  readonly segment: string;
  /** Byte offset and length of the ranged read in the segment object. */
  readonly offset: number;
  readonly length: number;
  readonly runs: readonly PlanRun[];
}

export interface RestorePlan {
  readonly format: typeof PLAN_FORMAT;
  readonly version: typeof PLAN_VERSION;
  readonly safe: string;
  readonly device: string;
  readonly rp: number;
  readonly blockSize: number;
  readonly deviceSize: number;
  /** The safe's key salt and key check (not secret): a restoring host derives keys from its key file. */
  readonly encryption: { readonly salt: string; readonly keyCheck: string } | null;
  /** This page covers blocks [fromBlock, nextBlock); nextBlock null means the plan is complete. */
  readonly fromBlock: number;
  readonly nextBlock: number | null;
  readonly ranges: readonly PlanRange[];
  /** Per segment in this page: its object key (and, from the restore function, a presigned URL). */
  readonly segments: Record<string, { readonly key: string; url?: string; expiresAt?: string }>;
  readonly stats: { readonly dataBlocks: number; readonly rangeBytes: number };
}

export interface PlanOptions {
  /** First block of the page. @default 0 */
  readonly fromBlock?: number;
  /** The page (and the plan) ends before this block. @default the device's end */
  readonly toBlock?: number;
  /** At most this many ranges per page. @default 4096 */
  readonly maxRanges?: number;
  /** A ranged read is at most this long. @default 8 MiB */
  readonly maxRangeBytes?: number;
  /** Reads of one segment this close together are merged (the gap is read and skipped). @default 64 KiB */
  readonly gapBytes?: number;
  /** Footers fetched in parallel. @default 16 */
  readonly parallel?: number;
}

type DataExtent = Extent & { kind: 'data' };

/** The first extent index whose end is past `block` (binary search). */
function firstExtentAfter(extents: readonly Extent[], block: number): number {
  let lo = 0;
  let hi = extents.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const e = extents[mid]!;
    if (e.first + e.count <= block) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The largest j in [from, to) with entries[j] ending within `limit` bytes of `start` (at least `from`). */
function lastFrameWithin(
  entries: readonly SegmentEntry[],
  from: number,
  to: number,
  start: number,
  limit: number,
): number {
  let lo = from;
  let hi = to - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    const e = entries[mid]!;
    if (e.offset + e.frameLength - start <= limit) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Builds one page of the plan of a resolved device. Reads only segment footers (cached by the reader). */
export async function planPage(
  reader: SafeReader,
  r: ResolvedDevice,
  encryption: RestorePlan['encryption'],
  opts: PlanOptions = {},
): Promise<RestorePlan> {
  const fromBlock = opts.fromBlock ?? 0;
  const toBlock = opts.toBlock ?? Number.POSITIVE_INFINITY;
  const maxRanges = opts.maxRanges ?? 4096;
  const maxRangeBytes = opts.maxRangeBytes ?? 8 * 1024 * 1024;
  const gap = opts.gapBytes ?? 64 * 1024;
  const parallel = opts.parallel ?? 16;

  let i = firstExtentAfter(r.extents, fromBlock);
  // Prefetch the footers this page can need: the segments of the next maxRanges data extents.
  const upcoming = new Set<string>();
  for (let j = i; j < r.extents.length && upcoming.size < maxRanges; j++) {
    const e = r.extents[j]!;
    if (e.kind === 'data') upcoming.add(e.segment);
  }
  await forEachLimit([...upcoming], parallel, async (id) => void (await reader.segmentEntries(id)));

  const ranges: { segment: string; offset: number; end: number; runs: PlanRun[] }[] = [];
  const segments: RestorePlan['segments'] = {};
  let dataBlocks = 0;
  let nextBlock: number | null = null;
  let cursor = fromBlock;
  // The newest range of each segment stays open: a later delta that replaced a few blocks splits
  // an older segment's run, and the rest of that run joins the same ranged read again.
  const open = new Map<string, (typeof ranges)[number]>();

  outer: for (; i < r.extents.length; i++) {
    const whole = r.extents[i]!;
    if (whole.first >= toBlock) break;
    if (whole.kind !== 'data') continue;
    const skip = Math.max(0, cursor - whole.first);
    const end = Math.min(whole.first + whole.count, toBlock);
    const e: DataExtent = {
      ...whole,
      first: whole.first + skip,
      count: end - whole.first - skip,
      frame: whole.frame + skip,
    };
    const entries = await reader.segmentEntries(e.segment);
    let frame = e.frame;
    const endFrame = e.frame + e.count;
    if (endFrame > entries.length) {
      // a map that names frames the segment does not have (a damaged or forged map or footer)
      throw new CorruptBlockError(
        `frames ${e.frame}..${endFrame - 1} named by the block map, the segment has ${entries.length}`,
        {
          safe: reader.safe,
          device: r.device,
          rp: r.rp,
          segment: e.segment,
          block: e.first + Math.max(0, entries.length - e.frame),
        },
      );
    }
    while (frame < endFrame) {
      const start = entries[frame]!.offset;
      const cur = open.get(e.segment);
      const joinable = cur !== undefined && start >= cur.end && start - cur.end <= gap;
      const fits = joinable && start + entries[frame]!.frameLength - cur.offset <= maxRangeBytes;
      let rangeOf = fits ? cur : undefined;
      if (!rangeOf) {
        if (ranges.length >= maxRanges) {
          nextBlock = e.first + (frame - e.frame);
          break outer;
        }
        rangeOf = { segment: e.segment, offset: start, end: start, runs: [] };
        ranges.push(rangeOf);
        open.set(e.segment, rangeOf);
        segments[e.segment] ??= { key: segmentKey(reader.safe, e.segment) };
      }
      const last = lastFrameWithin(entries, frame, endFrame, rangeOf.offset, maxRangeBytes);
      const count = last - frame + 1;
      rangeOf.runs.push({ first: e.first + (frame - e.frame), count, offset: start - rangeOf.offset, frame });
      rangeOf.end = entries[last]!.offset + entries[last]!.frameLength;
      dataBlocks += count;
      frame = last + 1;
    }
    cursor = e.first + e.count;
  }
  const rangeBytes = ranges.reduce((a, x) => a + x.end - x.offset, 0);
  return {
    format: PLAN_FORMAT,
    version: PLAN_VERSION,
    safe: reader.safe,
    device: r.device,
    rp: r.rp,
    blockSize: r.blockSize,
    deviceSize: r.deviceSize,
    encryption,
    fromBlock,
    nextBlock,
    ranges: ranges.map((x) => ({
      segment: x.segment,
      offset: x.offset,
      length: x.end - x.offset,
      runs: x.runs,
    })),
    segments,
    stats: { dataBlocks, rangeBytes },
  };
}

/**
 * Groups a page's ranges into streamed reads: ranges of one segment, in increasing offset order,
 * join one read when the bytes between them are at most `maxGap` and the read stays within
 * `maxBytes`. Against S3 a whole segment then costs one request instead of one per range
 * (fewer requests; an emulator that copies the whole object for each ranged GET gains most).
 * Every range is in exactly one span; a span's ranges are in offset order.
 */
export function streamSpans(
  ranges: readonly PlanRange[],
  maxGap = 256 * 1024,
  maxBytes = 64 * 1024 * 1024,
): PlanRange[][] {
  const bySegment = new Map<string, PlanRange[]>();
  for (const r of ranges) {
    const list = bySegment.get(r.segment);
    if (list) list.push(r);
    else bySegment.set(r.segment, [r]);
  }
  const spans: PlanRange[][] = [];
  for (const list of bySegment.values()) {
    list.sort((a, b) => a.offset - b.offset);
    let span: PlanRange[] = [];
    for (const r of list) {
      const head = span[0];
      const tail = span[span.length - 1];
      const joins =
        head !== undefined &&
        tail !== undefined &&
        r.offset >= tail.offset + tail.length &&
        r.offset - (tail.offset + tail.length) <= maxGap &&
        r.offset + r.length - head.offset <= maxBytes;
      if (!joins && span.length > 0) {
        spans.push(span);
        span = [];
      }
      span.push(r);
    }
    if (span.length > 0) spans.push(span);
  }
  return spans;
}
