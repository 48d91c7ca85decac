/**
 * Segment rewrite: the live frames of sparse segments are copied, byte for byte (ciphertext
 * stays ciphertext; no key is needed), into new dense segments. Planned before anything is
 * written, so the journal can name every segment an attempt may create.
 */
import { randomBytes } from 'node:crypto';
import { SEGMENT_HEADER_BYTES, type SegmentEntry, segmentFooter, segmentHeader } from '../format/segment.ts';
import { segmentKey } from '../keys.ts';
import type { ObjectStore } from '../ports/object-store.ts';
import type { FrameMove } from './extent-diff.ts';

export interface LiveSegment {
  readonly segment: string;
  readonly entries: readonly SegmentEntry[];
  /** Live frame numbers, ascending. */
  readonly live: readonly number[];
}

export interface OutputSegment {
  readonly id: string;
  readonly key: string;
  readonly sources: readonly LiveSegment[];
  readonly bytes: number;
}

/** Packs the live frames of `sources` into new segments of about `targetBytes` (never splitting a source). */
export function planRewrite(
  safe: string,
  sources: readonly LiveSegment[],
  targetBytes: number,
): OutputSegment[] {
  const out: OutputSegment[] = [];
  let cur: LiveSegment[] = [];
  let bytes = 0;
  const close = (): void => {
    if (cur.length === 0) return;
    const id = randomBytes(32).toString('hex');
    out.push({ id, key: segmentKey(safe, id), sources: cur, bytes });
    cur = [];
    bytes = 0;
  };
  for (const s of sources) {
    const b = s.live.reduce((n, f) => n + s.entries[f]!.frameLength, 0);
    if (bytes > 0 && bytes + b > targetBytes) close();
    cur.push(s);
    bytes += b;
  }
  close();
  return out;
}

const MAX_READ = 8 * 1024 * 1024;

/** Where each live frame goes: the frames of an output's sources, in order (deterministic). */
export function movesOf(
  outputs: readonly { id: string; sources: readonly { segment: string; live: readonly number[] }[] }[],
): Map<string, Map<number, FrameMove>> {
  const moves = new Map<string, Map<number, FrameMove>>();
  for (const o of outputs) {
    let frame = 0;
    for (const s of o.sources) {
      const m = new Map<number, FrameMove>();
      for (const f of s.live) m.set(f, { segment: o.id, frame: frame++ });
      moves.set(s.segment, m);
    }
  }
  return moves;
}

/** Writes one output segment (its frames in movesOf order); returns its size and frame count. */
export async function writeOutputSegment(
  store: ObjectStore,
  safe: string,
  o: { readonly key: string; readonly sources: readonly LiveSegment[] },
  encrypted: boolean,
): Promise<{ bytes: number; frames: number }> {
  const w = store.openWriter(o.key);
  const entries: SegmentEntry[] = [];
  let offset = SEGMENT_HEADER_BYTES;
  try {
    await w.write(segmentHeader(encrypted));
    for (const s of o.sources) {
      // runs of adjacent live frames, one ranged read each (at most MAX_READ)
      let i = 0;
      while (i < s.live.length) {
        let j = i;
        const start = s.entries[s.live[i]!]!.offset;
        let end = start + s.entries[s.live[i]!]!.frameLength;
        while (j + 1 < s.live.length) {
          const next = s.entries[s.live[j + 1]!]!;
          if (next.offset !== end || end + next.frameLength - start > MAX_READ) break;
          end += next.frameLength;
          j++;
        }
        const buf = await store.getRange(segmentKey(safe, s.segment), start, end - start);
        await w.write(buf);
        for (let k = i; k <= j; k++) {
          const e = s.entries[s.live[k]!]!;
          entries.push({ ...e, offset: offset + (e.offset - start) });
        }
        offset += end - start;
        i = j + 1;
      }
    }
    await w.write(segmentFooter(entries, offset));
    const info = await w.finish();
    return { bytes: info.size, frames: entries.length };
  } catch (e) {
    await w.abort().catch(() => undefined);
    throw e;
  }
}
