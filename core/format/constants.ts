/** Format constants (docs/FORMAT.md). Any change to the bytes bumps FORMAT_VERSION. */
/** The version this code writes. */
export const FORMAT_VERSION = 2;
/** The versions this code reads (every object of a v1 safe stays readable). */
export const READABLE_VERSIONS: readonly number[] = [1, 2];

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** Block sizes: powers of two from 4 KiB to 512 KiB, so every block size divides 512 KiB (EBS). */
export const MIN_BLOCK_SIZE = 4 * KiB;
export const MAX_BLOCK_SIZE = 512 * KiB;
/** Default picked by benchmark (docs/FORMAT.md "Block size"). */
export const DEFAULT_BLOCK_SIZE = 64 * KiB;

/** A segment is closed once it holds this many stored bytes. */
export const DEFAULT_SEGMENT_BYTES = 32 * MiB;

export const SEGMENT_MAGIC = 'CDPSEG\x00\x01';
/** Trailer magic of a v1 segment (no binding in its index). */
export const SEGMENT_TRAILER_MAGIC_V1 = 'CDPSEGIX';
/** Trailer magic of a v2 segment: its index starts with the segment's binding (id and safe). */
export const SEGMENT_TRAILER_MAGIC = 'CDPSEGI2';
export const MAP_MAGIC = 'CDPMAP\x00\x01';

export function isValidBlockSize(n: number): boolean {
  return Number.isInteger(n) && n >= MIN_BLOCK_SIZE && n <= MAX_BLOCK_SIZE && (n & (n - 1)) === 0;
}
