/**
 * Segment rewrite: the live frames of sparse segments are copied, byte for byte (ciphertext
 * stays ciphertext; no key is needed), into new dense segments. Planned before anything is
 * written, so the journal can name every segment an attempt may create. Live frames are kept as
 * ranges, never one entry per block.
 */
import { randomBytes } from 'node:crypto';
import { SEGMENT_HEADER_BYTES, type SegmentEntry, segmentFooter, segmentHeader } from '../format/segment.ts';
import { segmentKey } from '../keys.ts';
import type { ObjectStore } from '../ports/object-store.ts';
import type { MoveRun } from './extent-diff.ts';

/** Frame ranges `[first, count]`, ascending and disjoint. */
export type FrameRanges = readonly (readonly [number, number])[];

export interface SparseSegment {
  readonly segment: string;
  readonly live: FrameRanges;
  /** Estimated bytes of the live frames (live frames × the segment's average frame size). */
  readonly liveBytes: number;
}

export interface OutputSegment {
  readonly id: string;
  readonly key: string;
  readonly sources: readonly { readonly segment: string; readonly live: FrameRanges }[];
}

export function frameCount(live: FrameRanges): number {
  return live.reduce((n, [, c]) => n + c, 0);
}

/** Packs the live frames of `sources` into new segments of about `targetBytes` (never splitting a source). */
export function planRewrite(
  safe: string,
  sources: readonly SparseSegment[],
  targetBytes: number,
): OutputSegment[] {
  const out: OutputSegment[] = [];
  let cur: SparseSegment[] = [];
  let bytes = 0;
  const close = (): void => {
    if (cur.length === 0) return;
    const id = randomBytes(32).toString('hex');
    out.push({
      id,
      key: segmentKey(safe, id),
      sources: cur.map((s) => ({ segment: s.segment, live: s.live })),
    });
    cur = [];
    bytes = 0;
  };
  for (const s of sources) {
    if (bytes > 0 && bytes + s.liveBytes > targetBytes) close();
    cur.push(s);
    bytes += s.liveBytes;
  }
  close();
  return out;
}

/** Where the live frames go: an output's sources' ranges, in order (deterministic). */
export function movesOf(outputs: readonly OutputSegment[]): Map<string, MoveRun[]> {
  const moves = new Map<string, MoveRun[]>();
  for (const o of outputs) {
    let next = 0;
    for (const s of o.sources) {
      const runs: MoveRun[] = [];
      for (const [first, count] of s.live) {
        runs.push({ first, count, segment: o.id, newFirst: next });
        next += count;
      }
      moves.set(s.segment, runs);
    }
  }
  return moves;
}

const MAX_READ = 8 * 1024 * 1024;

/** Writes one output segment (its frames in movesOf order); returns its size and frame count. */
export async function writeOutputSegment(
  store: ObjectStore,
  safe: string,
  o: {
    readonly id: string;
    readonly key: string;
    readonly sources: readonly { segment: string; live: FrameRanges; entries: readonly SegmentEntry[] }[];
  },
  encrypted: boolean,
): Promise<{ bytes: number; frames: number }> {
  const w = store.openWriter(o.key);
  const entries: SegmentEntry[] = [];
  let offset = SEGMENT_HEADER_BYTES;
  try {
    await w.write(segmentHeader(encrypted));
    for (const s of o.sources) {
      for (const [first, count] of s.live) {
        // adjacent frames: one ranged read per run (at most MAX_READ)
        let f = first;
        while (f < first + count) {
          const start = s.entries[f]!.offset;
          let end = start + s.entries[f]!.frameLength;
          let g = f + 1;
          while (
            g < first + count &&
            s.entries[g]!.offset === end &&
            end + s.entries[g]!.frameLength - start <= MAX_READ
          ) {
            end += s.entries[g]!.frameLength;
            g++;
          }
          const buf = await store.getRange(segmentKey(safe, s.segment), start, end - start);
          await w.write(buf);
          for (let k = f; k < g; k++) {
            const e = s.entries[k]!;
            entries.push({ ...e, offset: offset + (e.offset - start) });
          }
          offset += end - start;
          f = g;
        }
      }
    }
    await w.write(segmentFooter(entries, offset, { segment: o.id, safe }));
    const info = await w.finish();
    return { bytes: info.size, frames: entries.length };
  } catch (e) {
    await w.abort().catch(() => undefined);
    throw e;
  }
}
