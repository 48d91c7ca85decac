/** Reconstructs a device image at an RP with the core reader (what restore will build on). */
import { createHash } from 'node:crypto';
import type { SafeReader } from '#core/safe-reader.ts';

export async function readImage(reader: SafeReader, rp: number, device: string): Promise<Buffer> {
  const r = await reader.resolve(rp, device);
  const img = Buffer.alloc(r.deviceSize);
  await reader.readBlocks(r, (block, data) => {
    data.copy(img, block * r.blockSize);
  });
  return img;
}

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
