/**
 * Block maps (docs/FORMAT.md "Block map"): which blocks of a device changed in one recovery point
 * and where each lives, as extents (runs), never one record per block.
 *
 *   header   32 B   magic "CDPMAP\0\1" | version u16 | flags u16 | blockSize u32 | deviceSize u64 |
 *                   extentCount u32 | segmentCount u32
 *   body     zstd(  segment ids [segmentCount × 32 B]
 *                || extents [extentCount × 24 B] )
 *   extent   firstBlock u64 | count u32 | kind u8 (0 zero, 1 data) | reserved 3 B | segment u32 | firstFrame u32
 *
 * A data extent's blocks are the frames firstFrame … firstFrame+count-1 of one segment (frame
 * numbers index the segment's footer). Extents are sorted by firstBlock and do not overlap.
 */
import { zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import { MAP_MAGIC } from './constants.ts';

/** The block map's layout has not changed since format v1: maps are version 1 in every safe. */
export const MAP_VERSION = 1;

export type Extent =
  | { readonly kind: 'zero'; readonly first: number; readonly count: number }
  | {
      readonly kind: 'data';
      readonly first: number;
      readonly count: number;
      readonly segment: string;
      readonly frame: number;
    };

export interface BlockMap {
  readonly blockSize: number;
  readonly deviceSize: number;
  readonly extents: readonly Extent[];
}

export class BlockMapFormatError extends Error {}

const HEADER = 32;
const EXTENT = 24;
/** A decoded body above this size is refused unread (bounded memory for hostile input): 40 M extents. */
const MAX_MAP_BODY = 1024 * 1024 * 1024;

/** Appends a block to an extent list, extending the last extent when the block continues it. */
export function pushBlock(
  list: Extent[],
  block: number,
  loc: { segment: string; frame: number } | 'zero',
): void {
  const last = list[list.length - 1];
  if (last && last.first + last.count === block) {
    if (loc === 'zero' && last.kind === 'zero') {
      list[list.length - 1] = { ...last, count: last.count + 1 };
      return;
    }
    if (
      loc !== 'zero' &&
      last.kind === 'data' &&
      last.segment === loc.segment &&
      last.frame + last.count === loc.frame
    ) {
      list[list.length - 1] = { ...last, count: last.count + 1 };
      return;
    }
  }
  list.push(
    loc === 'zero'
      ? { kind: 'zero', first: block, count: 1 }
      : { kind: 'data', first: block, count: 1, ...loc },
  );
}

export function encodeBlockMap(m: BlockMap): Buffer {
  const segments = [...new Set(m.extents.flatMap((e) => (e.kind === 'data' ? [e.segment] : [])))];
  const segIndex = new Map(segments.map((s, i) => [s, i]));
  const body = Buffer.alloc(segments.length * 32 + m.extents.length * EXTENT);
  segments.forEach((s, i) => {
    Buffer.from(s, 'hex').copy(body, i * 32);
  });
  let o = segments.length * 32;
  for (const e of m.extents) {
    body.writeBigUInt64LE(BigInt(e.first), o);
    body.writeUInt32LE(e.count, o + 8);
    body[o + 12] = e.kind === 'zero' ? 0 : 1;
    if (e.kind === 'data') {
      body.writeUInt32LE(segIndex.get(e.segment)!, o + 16);
      body.writeUInt32LE(e.frame, o + 20);
    }
    o += EXTENT;
  }
  const h = Buffer.alloc(HEADER);
  h.write(MAP_MAGIC, 0, 'latin1');
  h.writeUInt16LE(MAP_VERSION, 8);
  h.writeUInt32LE(m.blockSize, 12);
  h.writeBigUInt64LE(BigInt(m.deviceSize), 16);
  h.writeUInt32LE(m.extents.length, 24);
  h.writeUInt32LE(segments.length, 28);
  return Buffer.concat([h, zstdCompressSync(body)]);
}

export function decodeBlockMap(buf: Uint8Array): BlockMap {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  if (b.length < HEADER || b.toString('latin1', 0, 8) !== MAP_MAGIC)
    throw new BlockMapFormatError('not a block map (bad magic)');
  const version = b.readUInt16LE(8);
  if (version !== MAP_VERSION)
    throw new BlockMapFormatError(`block map format version ${version} is not supported`);
  const blockSize = b.readUInt32LE(12);
  const deviceSize = Number(b.readBigUInt64LE(16));
  const extentCount = b.readUInt32LE(24);
  const segmentCount = b.readUInt32LE(28);
  const want = segmentCount * 32 + extentCount * EXTENT;
  if (want > MAX_MAP_BODY)
    throw new BlockMapFormatError(
      `block map declares ${extentCount} extents and ${segmentCount} segments, more than a reader accepts`,
    );
  if (segmentCount > extentCount)
    throw new BlockMapFormatError(`block map declares ${segmentCount} segments for ${extentCount} extents`);
  let body: Buffer;
  try {
    body = zstdDecompressSync(b.subarray(HEADER), { maxOutputLength: want + 1 });
  } catch (e) {
    throw new BlockMapFormatError(`block map body does not decode (truncated?): ${(e as Error).message}`);
  }
  if (body.length !== want)
    throw new BlockMapFormatError(`block map body is ${body.length} bytes, header says ${want}`);
  const segments = Array.from({ length: segmentCount }, (_, i) => body.toString('hex', i * 32, i * 32 + 32));
  const blocks = Math.ceil(deviceSize / blockSize);
  const extents: Extent[] = [];
  let o = segmentCount * 32;
  let next = 0;
  for (let i = 0; i < extentCount; i++, o += EXTENT) {
    const first = Number(body.readBigUInt64LE(o));
    const count = body.readUInt32LE(o + 8);
    const kind = body[o + 12];
    if (count === 0 || first < next || first + count > blocks) {
      throw new BlockMapFormatError(`extent ${i} (${first}+${count}) is out of order or outside the device`);
    }
    next = first + count;
    if (kind === 0) extents.push({ kind: 'zero', first, count });
    else if (kind === 1) {
      const seg = body.readUInt32LE(o + 16);
      if (seg >= segmentCount)
        throw new BlockMapFormatError(`extent ${i} names segment ${seg} of ${segmentCount}`);
      extents.push({ kind: 'data', first, count, segment: segments[seg]!, frame: body.readUInt32LE(o + 20) });
    } else throw new BlockMapFormatError(`extent ${i} has unknown kind ${kind}`);
  }
  return { blockSize, deviceSize, extents };
}

function slice(e: Extent, from: number, to: number): Extent {
  const count = to - from;
  return e.kind === 'zero'
    ? { kind: 'zero', first: from, count }
    : { ...e, first: from, count, frame: e.frame + (from - e.first) };
}

/** The extents of `base` with `delta` laid over them (delta wins where both have a block). O(n + m). */
export function overlay(base: readonly Extent[], delta: readonly Extent[]): Extent[] {
  const out: Extent[] = [];
  let i = 0;
  let cur: Extent | undefined = base[0];
  const advance = (): void => {
    i++;
    cur = base[i];
  };
  for (const d of delta) {
    const end = d.first + d.count;
    while (cur && cur.first + cur.count <= d.first) {
      out.push(cur);
      advance();
    }
    if (cur && cur.first < d.first) out.push(slice(cur, cur.first, d.first));
    while (cur && cur.first + cur.count <= end) advance();
    if (cur && cur.first < end) cur = slice(cur, end, cur.first + cur.count);
    out.push(d);
  }
  while (cur) {
    out.push(cur);
    advance();
  }
  return out;
}
