/** The restore function's requests (docs/FORMAT.md "Restore plan"), shared by the function and the agent. */
import { z } from 'zod';
import { rpSelector } from './catalog-api.ts';
import { BadInputError } from './errors.ts';

export const restoreRequestSchema = z.object({
  action: z.literal('plan'),
  safe: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/),
  device: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/),
  rp: rpSelector,
  fromBlock: z.number().int().nonnegative().default(0),
  maxRanges: z.number().int().positive().max(20_000).optional(),
});

export type RestoreRequest = z.infer<typeof restoreRequestSchema>;

export function parseRestoreRequest(input: unknown): RestoreRequest {
  const r = restoreRequestSchema.safeParse(input);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new BadInputError('restore request', `invalid (${i?.path.join('.') || 'request'}: ${i?.message})`);
  }
  return r.data;
}
