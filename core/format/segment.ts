/**
 * Segment layout (docs/FORMAT.md §3.2): immutable; frames packed back to back between a header and
 * a footer index, so a reader can fetch one block, or a run of adjacent blocks, with one ranged
 * GET, and can list a segment's frames by reading only its tail.
 *
 *   header   16 B   magic "CDPSEG\0\1" | version u16 (2; 1 in v1) | flags u16 (bit 0 encrypted) | reserved u32
 *   frames   ...    see frame.ts
 *   index    n B    zstd( binding ‖ entries[frameCount] ), entry = identity(32) | offset u64 | frameLength u32 | plainLength u32
 *                   binding (v2) = segment id (32 raw bytes) ‖ SHA-256("cdp-offsite safe " + safe id)
 *   trailer  32 B   indexOffset u64 | indexLength u32 | frameCount u32 | sha256(index)[0:8] | magic "CDPSEGI2" ("CDPSEGIX": v1, no binding)
 *
 * The binding makes a segment prove it is the one its name asks for: a reader that finds another
 * segment's binding (a swap, a copy under the wrong name, another safe's segment) refuses it.
 */
import { createHash } from 'node:crypto';
import { zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import { SEGMENT_MAGIC, SEGMENT_TRAILER_MAGIC, SEGMENT_TRAILER_MAGIC_V1 } from './constants.ts';

export const SEGMENT_HEADER_BYTES = 16;
export const SEGMENT_TRAILER_BYTES = 32;
const ENTRY_BYTES = 48;
const BINDING_BYTES = 64;
/** The segment version this code writes; 1 and 2 are read. */
export const SEGMENT_VERSION = 2;

/** Which segment a footer belongs to: its id and its safe. */
export interface SegmentBinding {
  readonly segment: string;
  readonly safe: string;
}

function safeDigest(safe: string): Buffer {
  return createHash('sha256').update(`cdp-offsite safe ${safe}`).digest();
}

export interface SegmentEntry {
  readonly identity: Buffer;
  readonly offset: number;
  readonly frameLength: number;
  readonly plainLength: number;
}

export class SegmentFormatError extends Error {}

export function segmentHeader(encrypted: boolean): Buffer {
  const h = Buffer.alloc(SEGMENT_HEADER_BYTES);
  h.write(SEGMENT_MAGIC, 0, 'latin1');
  h.writeUInt16LE(SEGMENT_VERSION, 8);
  h.writeUInt16LE(encrypted ? 1 : 0, 10);
  return h;
}

export function parseSegmentHeader(b: Uint8Array): { version: number; encrypted: boolean } {
  const h = Buffer.from(b.buffer, b.byteOffset, Math.min(b.length, SEGMENT_HEADER_BYTES));
  if (h.length < SEGMENT_HEADER_BYTES || h.toString('latin1', 0, 8) !== SEGMENT_MAGIC) {
    throw new SegmentFormatError('not a segment (bad magic)');
  }
  const version = h.readUInt16LE(8);
  if (version !== 1 && version !== SEGMENT_VERSION)
    throw new SegmentFormatError(`segment format version ${version} is not supported`);
  return { version, encrypted: (h.readUInt16LE(10) & 1) === 1 };
}

/**
 * Builds the index and trailer of segment `binding.segment` of safe `binding.safe` whose frames
 * were written at the given entries.
 */
export function segmentFooter(
  entries: readonly SegmentEntry[],
  indexOffset: number,
  binding: SegmentBinding,
): Buffer {
  const raw = Buffer.alloc(BINDING_BYTES + entries.length * ENTRY_BYTES);
  if (!/^[0-9a-f]{64}$/.test(binding.segment)) throw new RangeError(`bad segment id ${binding.segment}`);
  raw.write(binding.segment, 0, 'hex');
  safeDigest(binding.safe).copy(raw, 32);
  entries.forEach((e, i) => {
    const o = BINDING_BYTES + i * ENTRY_BYTES;
    e.identity.copy(raw, o);
    raw.writeBigUInt64LE(BigInt(e.offset), o + 32);
    raw.writeUInt32LE(e.frameLength, o + 40);
    raw.writeUInt32LE(e.plainLength, o + 44);
  });
  const index = zstdCompressSync(raw);
  const t = Buffer.alloc(SEGMENT_TRAILER_BYTES);
  t.writeBigUInt64LE(BigInt(indexOffset), 0);
  t.writeUInt32LE(index.length, 8);
  t.writeUInt32LE(entries.length, 12);
  createHash('sha256').update(index).digest().copy(t, 16, 0, 8);
  t.write(SEGMENT_TRAILER_MAGIC, 24, 'latin1');
  return Buffer.concat([index, t]);
}

export interface SegmentTrailer {
  /** 2: the index starts with the segment's binding; 1: a v1 segment, no binding. */
  readonly version: 1 | 2;
  readonly indexOffset: number;
  readonly indexLength: number;
  readonly frameCount: number;
  readonly indexHash: Buffer;
}

export function parseSegmentTrailer(b: Uint8Array, segmentSize: number): SegmentTrailer {
  const t = Buffer.from(b.buffer, b.byteOffset, b.length);
  const magic = t.length === SEGMENT_TRAILER_BYTES ? t.toString('latin1', 24, 32) : '';
  if (magic !== SEGMENT_TRAILER_MAGIC && magic !== SEGMENT_TRAILER_MAGIC_V1) {
    throw new SegmentFormatError('segment trailer missing (truncated segment?)');
  }
  const indexOffset = Number(t.readBigUInt64LE(0));
  const indexLength = t.readUInt32LE(8);
  if (
    indexOffset < SEGMENT_HEADER_BYTES ||
    indexOffset + indexLength + SEGMENT_TRAILER_BYTES !== segmentSize
  ) {
    throw new SegmentFormatError(
      `segment index at ${indexOffset}+${indexLength} does not fit a ${segmentSize}-byte segment`,
    );
  }
  return {
    version: magic === SEGMENT_TRAILER_MAGIC ? 2 : 1,
    indexOffset,
    indexLength,
    frameCount: t.readUInt32LE(12),
    indexHash: Buffer.from(t.subarray(16, 24)),
  };
}

/**
 * Bytes a reader asks for at a segment's end: the trailer and, for any segment of ordinary size,
 * its whole (compressed) index, so one request reads the footer.
 */
export const SEGMENT_FOOTER_READ = 64 * 1024;

/**
 * The trailer from `tail` (the last bytes of a `segmentSize`-byte segment) and the index bytes when
 * `tail` reaches back far enough; otherwise `index` is undefined and the caller reads
 * `indexOffset`+`indexLength` itself.
 */
export function splitSegmentFooter(
  tail: Buffer,
  segmentSize: number,
): { trailer: SegmentTrailer; index: Buffer | undefined } {
  if (tail.length < SEGMENT_TRAILER_BYTES)
    throw new SegmentFormatError('segment trailer missing (truncated segment?)');
  const trailer = parseSegmentTrailer(tail.subarray(tail.length - SEGMENT_TRAILER_BYTES), segmentSize);
  const tailStart = segmentSize - tail.length;
  const index =
    trailer.indexOffset >= tailStart
      ? tail.subarray(trailer.indexOffset - tailStart, trailer.indexOffset - tailStart + trailer.indexLength)
      : undefined;
  return { trailer, index };
}

/**
 * A segment's size as the trailer at the end of `tail` states it (its index ends where the
 * trailer begins), for a reader that got the tail without the object's size.
 */
export function segmentSizeFromTail(tail: Buffer): number {
  if (tail.length < SEGMENT_TRAILER_BYTES) return tail.length;
  const t = tail.subarray(tail.length - SEGMENT_TRAILER_BYTES);
  return Number(t.readBigUInt64LE(0)) + t.readUInt32LE(8) + SEGMENT_TRAILER_BYTES;
}

/** A segment's index lists at most this many frames (hostile trailers get no huge allocation). */
const MAX_FRAMES = 1 << 24;

/**
 * The frames a segment's index lists. `expect` is the segment the reader asked for: a v2 index that
 * binds another segment id or another safe is refused, naming both (v1 segments carry no binding).
 */
export function parseSegmentIndex(
  index: Uint8Array,
  trailer: SegmentTrailer,
  expect: SegmentBinding,
): SegmentEntry[] {
  const hash = createHash('sha256').update(index).digest().subarray(0, 8);
  if (!hash.equals(trailer.indexHash)) throw new SegmentFormatError('segment index checksum mismatch');
  if (trailer.frameCount > MAX_FRAMES)
    throw new SegmentFormatError(`segment trailer claims ${trailer.frameCount} frames`);
  const head = trailer.version === 2 ? BINDING_BYTES : 0;
  const want = head + trailer.frameCount * ENTRY_BYTES;
  let raw: Buffer;
  try {
    raw = zstdDecompressSync(index, { maxOutputLength: want + 1 });
  } catch (e) {
    throw new SegmentFormatError(`segment index does not decode: ${(e as Error).message}`);
  }
  if (raw.length !== want) throw new SegmentFormatError('segment index has the wrong length');
  if (head > 0) {
    const id = raw.toString('hex', 0, 32);
    if (id !== expect.segment)
      throw new SegmentFormatError(
        `holds segment ${id}, not segment ${expect.segment} (swapped or stored under the wrong name)`,
      );
    if (!raw.subarray(32, 64).equals(safeDigest(expect.safe)))
      throw new SegmentFormatError(
        `belongs to another safe, not to safe ${expect.safe} (copied from elsewhere?)`,
      );
  }
  const out: SegmentEntry[] = [];
  for (let o = head; o < raw.length; o += ENTRY_BYTES) {
    const offset = Number(raw.readBigUInt64LE(o + 32));
    const frameLength = raw.readUInt32LE(o + 40);
    if (offset < SEGMENT_HEADER_BYTES || offset + frameLength > trailer.indexOffset) {
      throw new SegmentFormatError(
        `segment index entry ${(o - head) / ENTRY_BYTES} points outside the frames`,
      );
    }
    out.push({
      identity: Buffer.from(raw.subarray(o, o + 32)),
      offset,
      frameLength,
      plainLength: raw.readUInt32LE(o + 44),
    });
  }
  return out;
}
