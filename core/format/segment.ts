/**
 * Segment layout (docs/FORMAT.md "Segment"): immutable; frames packed back to back between a
 * header and a footer index, so a reader can fetch one block, or a run of adjacent blocks, with
 * one ranged GET, and can list a segment's frames by reading only its tail.
 *
 *   header   16 B   magic "CDPSEG\0\1" | version u16 | flags u16 (bit 0 encrypted) | reserved u32
 *   frames   ...    see frame.ts
 *   index    n B    zstd( entries[frameCount] ), entry = identity(32) | offset u64 | frameLength u32 | plainLength u32
 *   trailer  32 B   indexOffset u64 | indexLength u32 | frameCount u32 | sha256(index)[0:8] | magic "CDPSEGIX"
 */
import { createHash } from 'node:crypto';
import { zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import { FORMAT_VERSION, SEGMENT_MAGIC, SEGMENT_TRAILER_MAGIC } from './constants.ts';

export const SEGMENT_HEADER_BYTES = 16;
export const SEGMENT_TRAILER_BYTES = 32;
const ENTRY_BYTES = 48;

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
  h.writeUInt16LE(FORMAT_VERSION, 8);
  h.writeUInt16LE(encrypted ? 1 : 0, 10);
  return h;
}

export function parseSegmentHeader(b: Uint8Array): { version: number; encrypted: boolean } {
  const h = Buffer.from(b.buffer, b.byteOffset, Math.min(b.length, SEGMENT_HEADER_BYTES));
  if (h.length < SEGMENT_HEADER_BYTES || h.toString('latin1', 0, 8) !== SEGMENT_MAGIC) {
    throw new SegmentFormatError('not a segment (bad magic)');
  }
  const version = h.readUInt16LE(8);
  if (version !== FORMAT_VERSION)
    throw new SegmentFormatError(`segment format version ${version} is not supported`);
  return { version, encrypted: (h.readUInt16LE(10) & 1) === 1 };
}

/** Builds the index and trailer of a segment whose frames were written at the given entries. */
export function segmentFooter(entries: readonly SegmentEntry[], indexOffset: number): Buffer {
  const raw = Buffer.alloc(entries.length * ENTRY_BYTES);
  entries.forEach((e, i) => {
    const o = i * ENTRY_BYTES;
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
  readonly indexOffset: number;
  readonly indexLength: number;
  readonly frameCount: number;
  readonly indexHash: Buffer;
}

export function parseSegmentTrailer(b: Uint8Array, segmentSize: number): SegmentTrailer {
  const t = Buffer.from(b.buffer, b.byteOffset, b.length);
  if (t.length !== SEGMENT_TRAILER_BYTES || t.toString('latin1', 24, 32) !== SEGMENT_TRAILER_MAGIC) {
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

export function parseSegmentIndex(index: Uint8Array, trailer: SegmentTrailer): SegmentEntry[] {
  const hash = createHash('sha256').update(index).digest().subarray(0, 8);
  if (!hash.equals(trailer.indexHash)) throw new SegmentFormatError('segment index checksum mismatch');
  let raw: Buffer;
  try {
    raw = zstdDecompressSync(index, { maxOutputLength: trailer.frameCount * ENTRY_BYTES + 1 });
  } catch (e) {
    throw new SegmentFormatError(`segment index does not decode: ${(e as Error).message}`);
  }
  if (raw.length !== trailer.frameCount * ENTRY_BYTES)
    throw new SegmentFormatError('segment index has the wrong length');
  const out: SegmentEntry[] = [];
  for (let o = 0; o < raw.length; o += ENTRY_BYTES) {
    const offset = Number(raw.readBigUInt64LE(o + 32));
    const frameLength = raw.readUInt32LE(o + 40);
    if (offset < SEGMENT_HEADER_BYTES || offset + frameLength > trailer.indexOffset) {
      throw new SegmentFormatError(`segment index entry ${o / ENTRY_BYTES} points outside the frames`);
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
