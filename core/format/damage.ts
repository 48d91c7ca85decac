/**
 * A damage record, `damage/<segment>/<run>.json` (docs/FORMAT.md §5a): frames of a segment that a
 * verify run read and found bad. A backup stores such blocks again from the device instead of
 * building on them, and never deduplicates against them.
 */
import { z } from 'zod';
import { SEGMENT_ID } from '../keys.ts';
import { decodeVersionedJson, v2Version } from './manifest.ts';

const count = z.number().int().nonnegative();

export const damageRecordSchema = z.object({
  format: z.literal('cdp-damage'),
  version: v2Version,
  segment: z.string().regex(SEGMENT_ID),
  /** Frame ranges [first, count] of the segment found bad, with why. */
  frames: z
    .array(z.object({ first: count, count: z.number().int().positive(), reason: z.string().max(1024) }))
    .max(100_000),
  foundAt: z.string(),
  foundBy: z.string().max(256),
  /** Where it was seen (informational). */
  rp: z.number().int().positive().optional(),
  device: z.string().max(64).optional(),
});
export type DamageRecord = z.infer<typeof damageRecordSchema>;

export function decodeDamageRecord(buf: Uint8Array, where: string): DamageRecord {
  return decodeVersionedJson(damageRecordSchema, buf, where, 'damage record');
}
