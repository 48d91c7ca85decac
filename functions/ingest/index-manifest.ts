/**
 * Use case: an object arrived under the safes prefix. A manifest is validated without reading
 * block data (core/rp-validation.ts) and its RP committed in the catalog, idempotently; an RP whose
 * parent is not committed yet waits (recorded, then retried by SQS, and committed as soon as its
 * parent commits); an invalid upload is quarantined with the reason. Segments, block maps and
 * safe.json need no work of their own: the manifest that references them checks them. Nothing is
 * ever deleted.
 */
import { BadKeyError, CdpError } from '#core/errors.ts';
import { parseKey } from '#core/keys.ts';
import type { Catalog, RpRecord } from '#core/ports/catalog.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import { InvalidRpError, type KnownSegment, readManifest, verifyReferences } from '#core/rp-validation.ts';
import type { ObjectCreatedEvent } from '#core/s3-event.ts';

export interface IndexDeps {
  readonly catalog: Catalog;
  /** The object store of one safe in the bucket this function serves. */
  storeFor(safe: string): ObjectStore;
  /** The bucket this function serves; events of other buckets are quarantined. */
  readonly bucket: string;
  now(): Date;
}

/** The RP's parent is not committed yet: the message is retried (and the RP committed with its parent). */
export class ParentPendingError extends CdpError {
  constructor(safe: string, rp: number, parent: number) {
    super(
      'E_PARENT_PENDING',
      `RP ${rp} of safe ${safe} waits for its parent RP ${parent}`,
      { safe, rp },
      'retried automatically',
    );
  }
}

export type IndexOutcome =
  | {
      readonly outcome: 'committed';
      readonly safe: string;
      readonly rp: number;
      readonly segments: number;
      readonly lagSeconds: number;
      /** Children that were waiting for this RP and committed with it. */
      readonly children: readonly IndexOutcome[];
    }
  | { readonly outcome: 'duplicate'; readonly safe: string; readonly rp: number }
  | {
      readonly outcome: 'quarantined';
      readonly key: string;
      readonly reason: string;
      readonly safe?: string;
      readonly rp?: number;
    }
  | { readonly outcome: 'ignored'; readonly key: string; readonly kind: string }
  | { readonly outcome: 'waiting'; readonly safe: string; readonly rp: number; readonly parent: number };

/** How many waiting descendants one invocation commits after their parent; the rest are retried by SQS. */
const MAX_CHAIN = 16;

interface Upload {
  readonly key: string;
  readonly size: number;
  readonly createdAt: string;
}

async function quarantine(
  deps: IndexDeps,
  u: Upload,
  reason: string,
  where: { safe?: string; rp?: number } = {},
): Promise<IndexOutcome> {
  await deps.catalog.quarantineUpload({
    key: u.key,
    reason,
    size: u.size,
    createdAt: u.createdAt,
    quarantinedAt: deps.now().toISOString(),
    ...where,
  });
  return { outcome: 'quarantined', key: u.key, reason, ...where };
}

export async function handleArrival(deps: IndexDeps, event: ObjectCreatedEvent): Promise<IndexOutcome> {
  const { key, size = 0 } = event.detail.object;
  const upload = { key, size, createdAt: event.time };
  if (event.detail.bucket.name !== deps.bucket) {
    return quarantine(
      deps,
      upload,
      `event for bucket ${event.detail.bucket.name}, this function serves ${deps.bucket}`,
    );
  }
  let parsed: ReturnType<typeof parseKey>;
  try {
    parsed = parseKey(key);
  } catch (e) {
    if (e instanceof BadKeyError) return quarantine(deps, upload, e.message);
    throw e;
  }
  if (parsed.kind !== 'manifest') return { outcome: 'ignored', key, kind: parsed.kind };
  return indexManifest(deps, upload, 0);
}

async function indexManifest(deps: IndexDeps, u: Upload, depth: number): Promise<IndexOutcome> {
  const parsed = parseKey(u.key);
  if (parsed.kind !== 'manifest') throw new Error(`${u.key} is not a manifest`);
  const { safe, rp } = parsed;
  const where = { safe, rp };
  const existing = await deps.catalog.getRp(safe, rp);
  if (existing?.state === 'committed') return { outcome: 'duplicate', safe, rp };
  if (existing?.state === 'quarantined') {
    return { outcome: 'quarantined', key: u.key, reason: existing.reason ?? 'quarantined', ...where };
  }
  const store = deps.storeFor(safe);
  try {
    const read = await readManifest(store, u.key);
    const m = read.manifest;
    // an RP whose every device map is full (its backup could not build on the parent's chain)
    // restores without its parent, so it does not wait for it, nor share its quarantine
    const standalone = m.devices.every((d) => d.full === true);
    if (m.parent !== null && !standalone) {
      const parent = await deps.catalog.getRp(safe, m.parent);
      if (parent?.state === 'quarantined') {
        return quarantine(
          deps,
          u,
          `parent RP ${m.parent} is quarantined (${parent.reason ?? 'invalid'})`,
          where,
        );
      }
      if (parent?.state !== 'committed') {
        await deps.catalog.markWaiting({
          safe,
          rp,
          state: 'waiting',
          parent: m.parent,
          createdAt: new Date(m.createdAt).toISOString(),
          updatedAt: deps.now().toISOString(),
          manifestKey: u.key,
          reason: `waiting for parent RP ${m.parent}`,
        });
        if (depth > 0) return { outcome: 'waiting', safe, rp, parent: m.parent };
        throw new ParentPendingError(safe, rp, m.parent);
      }
    }
    const known = async (ids: readonly string[]): Promise<Map<string, KnownSegment>> => {
      const recs = await deps.catalog.getSegments(safe, ids);
      return new Map(
        [...recs].map(([id, s]) => [
          id,
          {
            id,
            bytes: s.bytes,
            frames: s.frames,
            deleted: s.deletedAt !== undefined,
            ...(s.condemnedIn !== undefined ? { condemnedIn: s.condemnedIn } : {}),
          },
        ]),
      );
    };
    const v = await verifyReferences(store, read, known);
    await deps.catalog.putSegments(
      m.segments.map((s) => ({
        safe,
        id: s.id,
        key: s.key,
        bytes: s.bytes,
        frames: s.frames,
        firstRp: rp,
        liveBytes: s.bytes,
      })),
    );
    const createdAt = new Date(m.createdAt).toISOString();
    const record: RpRecord & { state: 'committed' } = {
      safe,
      rp,
      state: 'committed',
      parent: m.parent,
      createdAt,
      updatedAt: deps.now().toISOString(),
      manifestKey: u.key,
      manifestSha256: v.sha256,
      agent: m.agent,
      encrypted: m.encrypted,
      devices: m.devices.map((d) => ({
        id: d.id,
        sizeBytes: d.sizeBytes,
        blockSize: d.blockSize,
        blockMapKey: d.blockMap.key,
        blockMapBytes: d.blockMap.bytes,
        extents: d.blockMap.extents,
        changedBlocks: d.changedBlocks,
        storedBytes: d.storedBytes,
      })),
      segmentCount: m.segments.length,
      changedBytes: m.stats.changedBytes,
      storedBytes: m.stats.storedBytes,
    };
    const outcome = await deps.catalog.commitRp(record);
    if (outcome === 'already-committed') return { outcome: 'duplicate', safe, rp };
    const children: IndexOutcome[] = [];
    if (depth < MAX_CHAIN) {
      for (const c of await deps.catalog.waitingChildren(safe, rp)) {
        const child = await deps.catalog.getRp(safe, c.rp);
        children.push(
          await indexManifest(
            deps,
            { key: c.manifestKey, size: 0, createdAt: child?.createdAt ?? createdAt },
            depth + 1,
          ),
        );
      }
    }
    const lagSeconds = Math.max(0, (deps.now().getTime() - Date.parse(createdAt)) / 1000);
    return { outcome: 'committed', safe, rp, segments: m.segments.length, lagSeconds, children };
  } catch (e) {
    if (e instanceof InvalidRpError) return quarantine(deps, u, e.reason, where);
    throw e;
  }
}
