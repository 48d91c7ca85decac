/**
 * Use case: one page of the restore plan of a device at a committed RP (a number, `latest`, or
 * the newest RP at or before a time, from the catalog), with a presigned GET URL per segment so
 * the restoring host needs no access to the bucket. Work is proportional to the extents of the
 * RPs in the chain and the footers of the page's segments, never to the device's blocks.
 */
import { NotFoundError } from '#core/errors.ts';
import type { Catalog } from '#core/ports/catalog.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import type { RestoreRequest } from '#core/restore-api.ts';
import { planPage, type RestorePlan } from '#core/restore-plan.ts';
import { SafeReader } from '#core/safe-reader.ts';

export interface PlanDeps {
  readonly catalog: Catalog;
  storeFor(safe: string): ObjectStore;
  /** A presigned GET URL for an object key, and when it expires. */
  presign(key: string): Promise<{ url: string; expiresAt: string }>;
}

export async function committedRp(
  catalog: Catalog,
  safe: string,
  sel: number | 'latest' | string,
): Promise<number> {
  if (typeof sel === 'number') {
    const r = await catalog.getRp(safe, sel);
    if (r?.state !== 'committed') {
      throw new NotFoundError(
        `committed recovery point ${sel} of safe ${safe}${r ? ` (it is ${r.state})` : ''}`,
        { safe, rp: sel },
      );
    }
    return sel;
  }
  if (sel === 'latest') {
    const s = await catalog.getSafe(safe);
    if (!s?.newestRp) throw new NotFoundError(`a committed recovery point of safe ${safe}`, { safe });
    return s.newestRp;
  }
  const r = await catalog.rpAtOrBefore(safe, new Date(sel).toISOString());
  if (!r) throw new NotFoundError(`a committed recovery point of safe ${safe} at or before ${sel}`, { safe });
  return r.rp;
}

export async function planRestore(
  deps: PlanDeps,
  req: Extract<RestoreRequest, { action: 'plan' }>,
): Promise<RestorePlan> {
  const rp = await committedRp(deps.catalog, req.safe, req.rp);
  const reader = new SafeReader(deps.storeFor(req.safe), req.safe);
  const cfg = await reader.config();
  const resolved = await reader.resolve(rp, req.device);
  const encryption = cfg?.encryption
    ? { salt: cfg.encryption.salt, keyCheck: cfg.encryption.keyCheck }
    : null;
  const page = await planPage(reader, resolved, encryption, {
    fromBlock: req.fromBlock,
    maxRanges: req.maxRanges,
  });
  for (const s of Object.values(page.segments)) Object.assign(s, await deps.presign(s.key));
  return page;
}
