/** Test helpers over the core reader (what restore will build on). */
import { createHash } from 'node:crypto';
import type { SafeReader } from '#core/safe-reader.ts';

export function readImage(reader: SafeReader, rp: number, device: string): Promise<Buffer> {
  return reader.readImage(rp, device);
}

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
