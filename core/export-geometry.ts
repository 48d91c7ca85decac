/**
 * How an export splits a device into multipart-upload parts: whole blocks per part, at least
 * S3's 5 MiB minimum, at most 10,000 parts, and small enough for one Lambda invocation.
 */
import { MiB } from './format/constants.ts';

export const MIN_PART_BYTES = 5 * MiB;
export const MAX_PARTS = 10_000;
export const DEFAULT_PART_BYTES = 64 * MiB;

export interface PartGeometry {
  readonly partBytes: number;
  readonly parts: number;
  readonly blocksPerPart: number;
}

export function partGeometry(
  deviceSize: number,
  blockSize: number,
  requested = DEFAULT_PART_BYTES,
): PartGeometry {
  let partBytes = Math.max(requested, MIN_PART_BYTES, Math.ceil(deviceSize / MAX_PARTS));
  partBytes = Math.ceil(partBytes / blockSize) * blockSize;
  const parts = Math.max(1, Math.ceil(deviceSize / partBytes));
  return { partBytes, parts, blocksPerPart: partBytes / blockSize };
}

/** The blocks and bytes of part `n` (1-based). */
export function partSpan(
  g: PartGeometry,
  n: number,
  deviceSize: number,
): { firstBlock: number; blocks: number; bytes: number } {
  const start = (n - 1) * g.partBytes;
  const bytes = Math.min(g.partBytes, deviceSize - start);
  return { firstBlock: (n - 1) * g.blocksPerPart, blocks: g.blocksPerPart, bytes };
}
