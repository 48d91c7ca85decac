/**
 * Use case: an object arrived under the safes prefix. A manifest is validated without reading
 * block data (core/rp-validation.ts) and its RP committed in the catalog, idempotently; an RP whose
 * parent is not committed yet waits (recorded, then retried by SQS, and committed as soon as its
 * parent commits); an invalid upload is quarantined with the reason. Segments, block maps and
 * safe.json need no work of their own: the manifest that references them checks them. Nothing is
 * ever deleted.
 *
 * Compaction works on the bucket, not on the catalog, so it may merge RPs away before they are
 * indexed (an ingest backlog): the safe's newest generation decides. An RP it expired is recorded
 * expired (never committed, and its waiting children go on); an RP it retains is committed even
 * when its parent was merged away, since it restores through the generation.
 */
import { BadKeyError, CdpError } from '#core/errors.ts';
import type { Manifest } from '#core/format/manifest.ts';
import { manifestKey, parseKey, segmentKey } from '#core/keys.ts';
import type { Catalog, RpRecord } from '#core/ports/catalog.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import {
  checkedSegmentFrames,
  InvalidRpError,
  type KnownSegment,
  readManifest,
  verifyReferences,
} from '#core/rp-validation.ts';
import type { ObjectCreatedEvent } from '#core/s3-event.ts';
import { SafeReader } from '#core/safe-reader.ts';

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
      readonly outcome: 'expired';
      readonly safe: string;
      readonly rp: number;
      /** The generation that merged it away, when this invocation recorded it. */
      readonly generation?: number;
      /** Children that were waiting for this RP and were indexed with it. */
      readonly children: readonly IndexOutcome[];
    }
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

type Verdict = (
  | { readonly kind: 'expired' | 'retained'; readonly generation: number }
  | { readonly kind: 'uncovered' }
) & { readonly condemned: ReadonlyMap<string, number> };

/**
 * What the safe's newest generation says of RP `rp`: merged away by it, retained by it, or not
 * covered (newer than its `upTo`, or no generation yet). Read from the bucket, the authority.
 */
async function generationVerdict(store: ObjectStore, safe: string, rp: number): Promise<Verdict> {
  const gen = await new SafeReader(store, safe).generation();
  // the segments it lists as garbage, with the generation that condemned each
  const condemned = new Map<string, number>();
  for (const g of gen?.garbage ?? []) {
    const k = parseKey(g.key);
    if (k.kind === 'segment') condemned.set(k.segment, g.generation ?? gen!.generation);
  }
  if (!gen || rp > gen.upTo) return { kind: 'uncovered', condemned };
  return {
    kind: gen.rps.some((r) => r.rp === rp) ? 'retained' : 'expired',
    generation: gen.generation,
    condemned,
  };
}

/**
 * Checks that the newest generation restores every device of RP `m`, which it retains, as the
 * restore function serves it: its maps resolve (each checked by size and SHA-256), and every
 * segment they name is there, names itself in its index and holds the frames they use. This is the
 * only check of what the RP reads of ancestors the generation merged away (recorded expired, never
 * validated themselves), and of an RP whose own maps and segments GC deleted. Without reading
 * block data, like the validation of an upload.
 */
async function restoresThroughGeneration(
  store: ObjectStore,
  safe: string,
  m: Manifest,
  why?: string,
): Promise<void> {
  const reader = new SafeReader(store, safe);
  const bad = (reason: string) =>
    new InvalidRpError(manifestKey(safe, m.rp), why ? `${why}; through the generation: ${reason}` : reason);
  const framesNeeded = new Map<string, number>();
  for (const d of m.devices) {
    try {
      const resolved = await reader.resolve(m.rp, d.id);
      for (const e of resolved.extents)
        if (e.kind === 'data')
          framesNeeded.set(e.segment, Math.max(framesNeeded.get(e.segment) ?? 0, e.frame + e.count));
    } catch (e) {
      if (e instanceof CdpError) throw bad(e.message);
      throw e;
    }
  }
  for (const [id, need] of framesNeeded) {
    const key = segmentKey(safe, id);
    const frames = await checkedSegmentFrames(store, bad, { id, key }, m.encrypted);
    if (need > frames)
      throw bad(`the generation's maps use frame ${need - 1} of segment ${id}, which has ${frames}`);
  }
}

/** Indexes the children that were waiting for RP `rp` of `safe` (committed or merged away now). */
async function waitingChildrenOf(
  deps: IndexDeps,
  safe: string,
  rp: number,
  createdAt: string,
  depth: number,
): Promise<IndexOutcome[]> {
  const children: IndexOutcome[] = [];
  if (depth >= MAX_CHAIN) return children;
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
  return children;
}

/**
 * Records an RP a compaction merged away (whatever the catalog knew of it), then indexes its
 * waiting children. `known`: its parent and capture time, from its manifest or its waiting record.
 */
async function expired(
  deps: IndexDeps,
  u: Upload,
  where: { readonly safe: string; readonly rp: number },
  known: { readonly parent: number | null; readonly createdAt?: string },
  generation: number,
  depth: number,
): Promise<IndexOutcome> {
  const { safe, rp } = where;
  const createdAt = known.createdAt && new Date(known.createdAt).toISOString();
  await deps.catalog.expireRp({
    safe,
    rp,
    parent: known.parent,
    generation,
    manifestKey: u.key,
    ...(createdAt ? { createdAt } : {}),
    at: deps.now().toISOString(),
  });
  const children = await waitingChildrenOf(deps, safe, rp, createdAt ?? u.createdAt, depth);
  return { outcome: 'expired', safe, rp, generation, children };
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
  if (existing?.state === 'expired') {
    // merged away by a compaction: a replayed event commits nothing (children that still wait go on)
    const children = await waitingChildrenOf(deps, safe, rp, existing.createdAt ?? u.createdAt, depth);
    return { outcome: 'expired', safe, rp, children };
  }
  const store = deps.storeFor(safe);
  try {
    // a compaction may have merged it away before it was indexed (its manifest may even be
    // collected by now): recorded expired, not validated
    const verdict = await generationVerdict(store, safe, rp);
    if (verdict.kind === 'expired') {
      const known =
        existing ??
        (await readManifest(store, u.key)
          .then((r) => r.manifest)
          .catch(() => undefined));
      return expired(
        deps,
        u,
        where,
        { parent: known?.parent ?? null, createdAt: known?.createdAt },
        verdict.generation,
        depth,
      );
    }
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
      // a parent merged away by a compaction was committed first, and the generation that retains
      // this RP restores it without that parent (a bucket without that generation: it waits)
      const mergedParent = parent?.state === 'expired' && verdict.kind === 'retained';
      if (parent?.state !== 'committed' && !mergedParent) {
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
            // the bucket's newest generation, not the catalog, says what is garbage now: the
            // catalog may lag a generation that took a segment up again
            ...(verdict.condemned.has(id) ? { condemnedIn: verdict.condemned.get(id) } : {}),
          },
        ]),
      );
    };
    let throughGeneration = false;
    const v = await verifyReferences(store, read, known).catch(async (e: unknown) => {
      // garbage collection may have deleted the maps and segments it was written with once a
      // generation rebuilt it: a retained RP restores through that generation, which is checked instead
      if (!(e instanceof InvalidRpError) || verdict.kind !== 'retained') throw e;
      await restoresThroughGeneration(store, safe, m, e.reason);
      throughGeneration = true;
      return { sha256: read.sha256 };
    });
    // a retained RP is served through the generation, which may read objects of ancestors it merged
    // away before they were indexed (recorded expired, not validated): those are checked here
    if (verdict.kind === 'retained' && !throughGeneration) await restoresThroughGeneration(store, safe, m);
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
    // a compaction that committed its generation meanwhile may have skipped this RP (not committed
    // yet when it recorded the generation): looked at again after the commit, so one of the two sees it
    const after = await generationVerdict(store, safe, rp);
    if (after.kind === 'expired') return expired(deps, u, where, m, after.generation, depth);
    const children = await waitingChildrenOf(deps, safe, rp, createdAt, depth);
    const lagSeconds = Math.max(0, (deps.now().getTime() - Date.parse(createdAt)) / 1000);
    return { outcome: 'committed', safe, rp, segments: m.segments.length, lagSeconds, children };
  } catch (e) {
    if (e instanceof InvalidRpError) return quarantine(deps, u, e.reason, where);
    throw e;
  }
}
