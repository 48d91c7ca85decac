/**
 * The query function's requests (docs/FORMAT.md "Catalog", "Query API"): one schema shared by
 * the function and its callers (`cdp-agent list --remote`). Invoked directly with a request as
 * the payload, or through the function URL as GET paths:
 *
 *   { action: 'safes' }                          GET /safes
 *   { action: 'rps', safe, fromRp?, limit? }     GET /safes/<safe>/rps?fromRp=&limit=
 *   { action: 'rp', safe, at }                   GET /safes/<safe>/rps/<n | latest | ISO time>
 *   { action: 'lag', safe? }                     GET /lag?safe=
 *   { action: 'quarantine', safe? }              GET /quarantine?safe=
 */
import { z } from 'zod';
import { BadInputError } from './errors.ts';
import { SAFE_ID } from './keys.ts';

const safe = z.string().regex(SAFE_ID);
/** An RP number, `latest`, or an ISO-8601 time meaning the newest RP at or before it. */
export const rpSelector = z.union([
  z.number().int().positive(),
  z.literal('latest'),
  z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'not a time'),
]);

export const queryRequestSchema = z.discriminatedUnion('action', [
  z.object({ action: z.literal('safes') }),
  z.object({
    action: z.literal('rps'),
    safe,
    fromRp: z.number().int().positive().optional(),
    limit: z.number().int().positive().max(10_000).optional(),
  }),
  z.object({ action: z.literal('rp'), safe, at: rpSelector }),
  z.object({ action: z.literal('lag'), safe: safe.optional() }),
  z.object({ action: z.literal('quarantine'), safe: safe.optional() }),
]);

export type QueryRequest = z.infer<typeof queryRequestSchema>;

export function parseQueryRequest(input: unknown, where: string): QueryRequest {
  const r = queryRequestSchema.safeParse(input);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new BadInputError(where, `invalid query (${i?.path.join('.') || 'request'}: ${i?.message})`);
  }
  return r.data;
}

const num = (s: string | undefined): number | undefined => (s === undefined ? undefined : Number(s));

/** Maps a function URL GET path and query string to a request (then checked by the schema). */
export function requestFromPath(path: string, query: Record<string, string | undefined>): unknown {
  const p = path.replace(/\/+$/, '').split('/').filter(Boolean).map(decodeURIComponent);
  if (p.length === 1 && p[0] === 'safes') return { action: 'safes' };
  if (p.length === 3 && p[0] === 'safes' && p[2] === 'rps') {
    return { action: 'rps', safe: p[1], fromRp: num(query.fromRp), limit: num(query.limit) };
  }
  if (p.length === 4 && p[0] === 'safes' && p[2] === 'rps') {
    const at = /^[0-9]+$/.test(p[3]!) ? Number(p[3]) : p[3];
    return { action: 'rp', safe: p[1], at };
  }
  if (p.length === 1 && p[0] === 'lag') return { action: 'lag', safe: query.safe };
  if (p.length === 1 && p[0] === 'quarantine') return { action: 'quarantine', safe: query.safe };
  return { action: `unknown path /${p.join('/')}` };
}
