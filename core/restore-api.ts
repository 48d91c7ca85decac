/** The restore function's requests (docs/FORMAT.md "Restore plan", "Export"), shared by the function and the agent. */
import { z } from 'zod';
import { rpSelector } from './catalog-api.ts';
import { BadInputError } from './errors.ts';
import { DEVICE_ID, SAFE_ID } from './keys.ts';

const safe = z.string().regex(SAFE_ID);
const device = z.string().regex(DEVICE_ID);

export const restoreRequestSchema = z.discriminatedUnion('action', [
  z.object({
    action: z.literal('plan'),
    safe,
    device,
    rp: rpSelector,
    fromBlock: z.number().int().nonnegative().default(0),
    maxRanges: z.number().int().positive().max(20_000).optional(),
  }),
  /** Materialize the RP as a raw image object in the bucket (failover); parts are built in parallel. */
  z.object({
    action: z.literal('export'),
    safe,
    device,
    rp: rpSelector,
    partBytes: z.number().int().positive().optional(),
  }),
  z.object({ action: z.literal('export-status'), safe, exportId: z.string().uuid() }),
]);

export type RestoreRequest = z.infer<typeof restoreRequestSchema>;

export function parseRestoreRequest(input: unknown): RestoreRequest {
  const r = restoreRequestSchema.safeParse(input);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new BadInputError('restore request', `invalid (${i?.path.join('.') || 'request'}: ${i?.message})`);
  }
  return r.data;
}
