/**
 * Validates an uploaded recovery point without reading block data (docs/FORMAT.md "Catalog",
 * "Validation"): the manifest (size, schema, version, the safe and RP its key names), safe.json,
 * every block map (exact key, size, SHA-256, decodes, fits the device), and every segment the
 * maps reference (exact key, size by HEAD, header and footer index by ranged reads, frame counts,
 * every referenced frame inside the segment). Segments of earlier RPs (dedup) are checked
 * against the catalog's records instead of S3.
 *
 * Two stages: `readManifest` (cheap: the manifest and safe.json) and `verifyReferences` (the maps
 * and segments), so a caller can check the parent RP in between.
 */
import { createHash } from 'node:crypto';
import { mapLimit } from './concurrency.ts';
import { BadKeyError, CdpError } from './errors.ts';
import { type BlockMap, BlockMapFormatError, decodeBlockMap } from './format/block-map.ts';
import { isValidBlockSize, MiB } from './format/constants.ts';
import { decodeManifest, decodeSafeConfig, type Manifest, ManifestFormatError } from './format/manifest.ts';
import {
  parseSegmentHeader,
  parseSegmentIndex,
  parseSegmentTrailer,
  SEGMENT_HEADER_BYTES,
  SEGMENT_TRAILER_BYTES,
  SegmentFormatError,
} from './format/segment.ts';
import { manifestKey, parseKey, safeConfigKey, segmentKey } from './keys.ts';
import type { ObjectStore } from './ports/object-store.ts';

/** Manifests above this size are refused unread (a 1 TiB full lists ~32k segments: ~6 MiB). */
export const MAX_MANIFEST_BYTES = 16 * MiB;
/** Block maps above this size are refused unread. */
export const MAX_BLOCK_MAP_BYTES = 128 * MiB;
/** Footer indexes above this size are refused unread (48 B per frame before compression). */
const MAX_INDEX_BYTES = 64 * MiB;
const PARALLEL = 16;

/** The upload is not a valid recovery point; `reason` says what and where. Never retried. */
export class InvalidRpError extends CdpError {
  readonly reason: string;
  constructor(key: string, reason: string) {
    super('E_INVALID_RP', `${key}: ${reason}`, { key });
    this.reason = reason;
  }
}

export interface KnownSegment {
  readonly id: string;
  readonly bytes: number;
  readonly frames: number;
  /** Garbage collection deleted it (the catalog says so). */
  readonly deleted?: boolean;
  /** The generation that listed it as garbage, while it still is. */
  readonly condemnedIn?: number;
}

export interface ReadManifest {
  readonly key: string;
  readonly manifest: Manifest;
  readonly sha256: string;
  readonly bytes: number;
}

export interface VerifiedRp extends ReadManifest {
  /** The segments this RP added (listed in its manifest), verified. */
  readonly newSegments: readonly KnownSegment[];
  /** Segments of earlier RPs that its maps reference (deduplicated blocks). */
  readonly reusedSegments: readonly string[];
  readonly maps: ReadonlyMap<string, { readonly extents: number }>;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Stage 1: the manifest at `key` and the safe's config. Throws InvalidRpError naming the fault. */
export async function readManifest(store: ObjectStore, key: string): Promise<ReadManifest> {
  const bad = (reason: string): InvalidRpError => new InvalidRpError(key, reason);
  let parsed: ReturnType<typeof parseKey>;
  try {
    parsed = parseKey(key);
  } catch (e) {
    if (e instanceof BadKeyError) throw bad(e.message);
    throw e;
  }
  if (parsed.kind !== 'manifest') throw bad(`not a manifest key (${parsed.kind})`);
  const { safe, rp } = parsed;
  const head = await store.head(key);
  if (!head) throw bad('manifest no longer exists');
  if (head.size > MAX_MANIFEST_BYTES) {
    throw bad(`oversized manifest: ${head.size} bytes, the limit is ${MAX_MANIFEST_BYTES}`);
  }
  const body = await store.get(key);
  let manifest: Manifest;
  try {
    manifest = decodeManifest(body, key);
  } catch (e) {
    if (e instanceof ManifestFormatError) throw bad(e.message.replace(`${key}: `, ''));
    throw e;
  }
  if (manifest.safe !== safe) {
    throw bad(`manifest claims safe ${JSON.stringify(manifest.safe)} but is stored in safe ${safe}`);
  }
  if (manifest.rp !== rp) throw bad(`manifest claims RP ${manifest.rp} but is stored as RP ${rp}`);
  if (Number.isNaN(Date.parse(manifest.createdAt))) {
    throw bad(`createdAt ${JSON.stringify(manifest.createdAt)} is not a time`);
  }
  if (manifest.parent === null && rp !== 1) {
    // the agent makes RP 1 the full and every later RP a delta on the one before it; a later
    // RP without a parent would read back as a full and silently lose the blocks it did not list
    throw bad(`RP ${rp} claims to be a full (no parent), but only RP 1 of a safe is one`);
  }
  if (manifest.parent !== null && manifest.parent >= rp) {
    throw bad(`parent RP ${manifest.parent} is not older than RP ${rp}`);
  }
  if (manifestKey(safe, rp) !== key) throw bad('manifest key is not in canonical form');
  await checkParentGeometry(store, safe, manifest, bad);
  const cfgKey = safeConfigKey(safe);
  const cfgBody = await store.get(cfgKey).catch((e: unknown) => {
    if (e instanceof CdpError && e.code === 'E_NOT_FOUND') throw bad(`${cfgKey} is missing`);
    throw e;
  });
  let cfg: ReturnType<typeof decodeSafeConfig>;
  try {
    cfg = decodeSafeConfig(cfgBody, cfgKey);
  } catch (e) {
    if (e instanceof ManifestFormatError) throw bad(e.message);
    throw e;
  }
  if (cfg.safe !== safe) throw bad(`${cfgKey} names safe ${JSON.stringify(cfg.safe)}`);
  if (manifest.encrypted !== (cfg.encryption !== null)) {
    throw bad(
      `manifest says encrypted=${manifest.encrypted} but the safe is ${cfg.encryption ? '' : 'not '}encrypted`,
    );
  }
  const ids = new Set<string>();
  for (const d of manifest.devices) {
    if (ids.has(d.id)) throw bad(`device ${d.id} is listed twice`);
    ids.add(d.id);
    if (!isValidBlockSize(d.blockSize)) throw bad(`device ${d.id}: block size ${d.blockSize} is not valid`);
    let mapKey: ReturnType<typeof parseKey> | undefined;
    try {
      mapKey = parseKey(d.blockMap.key);
    } catch {
      mapKey = undefined;
    }
    if (
      mapKey?.kind !== 'block-map' ||
      mapKey.safe !== safe ||
      mapKey.rp !== rp ||
      mapKey.device !== d.id ||
      mapKey.run !== manifest.run
    ) {
      throw bad(
        `device ${d.id}: block map key ${JSON.stringify(d.blockMap.key)} is not a block map of RP ${rp} device ${d.id}${manifest.run ? ` written by run ${manifest.run}` : ''}`,
      );
    }
    if (d.blockMap.bytes > MAX_BLOCK_MAP_BYTES) {
      throw bad(`device ${d.id}: block map of ${d.blockMap.bytes} bytes exceeds ${MAX_BLOCK_MAP_BYTES}`);
    }
  }
  const segIds = new Set<string>();
  for (const s of manifest.segments) {
    let want: string;
    try {
      want = segmentKey(safe, s.id);
    } catch {
      throw bad(`segment id ${JSON.stringify(s.id)} is not valid`);
    }
    if (s.key !== want) throw bad(`segment key ${JSON.stringify(s.key)} is not ${want}`);
    if (segIds.has(s.id)) throw bad(`segment ${s.id} is listed twice`);
    segIds.add(s.id);
  }
  return { key, manifest, sha256: sha256(body), bytes: body.length };
}

/**
 * A device keeps its size and block size from its first backup on (the agent refuses a device that
 * changed): an RP that gives a device another geometry than its parent's manifest does would be
 * laid over the parent's map with its blocks misplaced. A parent that cannot be read is judged
 * when it arrives itself.
 */
async function checkParentGeometry(
  store: ObjectStore,
  safe: string,
  m: Manifest,
  bad: (reason: string) => InvalidRpError,
): Promise<void> {
  if (m.parent === null) return;
  const parentKey = manifestKey(safe, m.parent);
  let parent: Manifest;
  try {
    parent = decodeManifest(await store.get(parentKey), parentKey);
  } catch (e) {
    if (e instanceof CdpError) return;
    throw e;
  }
  for (const d of m.devices) {
    const p = parent.devices.find((x) => x.id === d.id);
    if (p && (p.sizeBytes !== d.sizeBytes || p.blockSize !== d.blockSize))
      throw bad(
        `device ${d.id} is ${d.sizeBytes} bytes in ${d.blockSize}-byte blocks, but ${p.sizeBytes} bytes in ${p.blockSize}-byte blocks in parent RP ${m.parent}`,
      );
  }
}

/**
 * The frame count of segment `id` of the safe as its header, footer and index say, after checking
 * them (without reading block data): present, `bytes` long when that is known, encrypted as
 * expected, and naming itself (this segment of this safe) in its index.
 */
export async function checkedSegmentFrames(
  store: ObjectStore,
  bad: (r: string) => InvalidRpError,
  s: { readonly id: string; readonly key: string; readonly bytes?: number },
  encrypted: boolean,
): Promise<number> {
  const head = await store.head(s.key);
  if (!head) throw bad(`segment ${s.key} is missing`);
  if (s.bytes !== undefined && head.size !== s.bytes) {
    throw bad(`segment ${s.key} is ${head.size} bytes, the manifest says ${s.bytes} (truncated?)`);
  }
  const bytes = head.size;
  if (bytes < SEGMENT_HEADER_BYTES + SEGMENT_TRAILER_BYTES) throw bad(`segment ${s.key} is too short`);
  try {
    const header = parseSegmentHeader(await store.getRange(s.key, 0, SEGMENT_HEADER_BYTES));
    if (header.encrypted !== encrypted) {
      throw new SegmentFormatError(`encrypted flag ${header.encrypted} differs from the manifest`);
    }
    const trailer = parseSegmentTrailer(
      await store.getRange(s.key, bytes - SEGMENT_TRAILER_BYTES, SEGMENT_TRAILER_BYTES),
      bytes,
    );
    if (trailer.indexLength > MAX_INDEX_BYTES) {
      throw new SegmentFormatError(`footer index of ${trailer.indexLength} bytes is too large`);
    }
    parseSegmentIndex(await store.getRange(s.key, trailer.indexOffset, trailer.indexLength), trailer, {
      segment: s.id,
      safe: parseKey(s.key).safe,
    });
    return trailer.frameCount;
  } catch (e) {
    if (e instanceof SegmentFormatError) throw bad(`segment ${s.key}: ${e.message}`);
    throw e;
  }
}

async function verifySegment(
  store: ObjectStore,
  bad: (r: string) => InvalidRpError,
  s: Manifest['segments'][number],
  encrypted: boolean,
): Promise<KnownSegment> {
  const frames = await checkedSegmentFrames(store, bad, s, encrypted);
  if (frames !== s.frames)
    throw bad(`segment ${s.key}: footer lists ${frames} frames, the manifest says ${s.frames}`);
  return { id: s.id, bytes: s.bytes, frames: s.frames };
}

/**
 * Stage 2: every block map and every segment they reference. `known` gives the catalog's records
 * of segments committed by earlier RPs of the safe (for deduplicated blocks).
 */
export async function verifyReferences(
  store: ObjectStore,
  read: ReadManifest,
  known: (ids: readonly string[]) => Promise<ReadonlyMap<string, KnownSegment>>,
): Promise<VerifiedRp> {
  const { key, manifest } = read;
  const bad = (reason: string): InvalidRpError => new InvalidRpError(key, reason);
  const maps = new Map<string, { extents: number }>();
  const framesNeeded = new Map<string, { frames: number; device: string }>();
  await mapLimit(manifest.devices, PARALLEL, async (d) => {
    const k = d.blockMap.key;
    const head = await store.head(k);
    if (!head) throw bad(`block map ${k} is missing`);
    if (head.size !== d.blockMap.bytes) {
      throw bad(`block map ${k} is ${head.size} bytes, the manifest says ${d.blockMap.bytes}`);
    }
    const body = await store.get(k);
    if (sha256(body) !== d.blockMap.sha256) throw bad(`block map ${k}: checksum mismatch (SHA-256)`);
    let map: BlockMap;
    try {
      map = decodeBlockMap(body);
    } catch (e) {
      if (e instanceof BlockMapFormatError) throw bad(`block map ${k}: ${e.message}`);
      throw e;
    }
    if (map.blockSize !== d.blockSize || map.deviceSize !== d.sizeBytes) {
      throw bad(
        `block map ${k} describes ${map.deviceSize} bytes in ${map.blockSize}-byte blocks, the manifest ${d.sizeBytes} in ${d.blockSize}`,
      );
    }
    if (map.extents.length !== d.blockMap.extents) {
      throw bad(`block map ${k} has ${map.extents.length} extents, the manifest says ${d.blockMap.extents}`);
    }
    for (const e of map.extents) {
      if (e.kind !== 'data') continue;
      const need = e.frame + e.count;
      const cur = framesNeeded.get(e.segment);
      if (!cur || cur.frames < need) framesNeeded.set(e.segment, { frames: need, device: d.id });
    }
    maps.set(d.id, { extents: map.extents.length });
  });
  const newSegments = await mapLimit(manifest.segments, PARALLEL, (s) =>
    verifySegment(store, bad, s, manifest.encrypted),
  );
  const byId = new Map<string, KnownSegment>(newSegments.map((s) => [s.id, s]));
  const reused = [...framesNeeded.keys()].filter((id) => !byId.has(id));
  const earlier = reused.length > 0 ? await known(reused) : new Map<string, KnownSegment>();
  const view = manifest.view ?? 0;
  const { safe } = parseKey(key);
  for (const [id, need] of framesNeeded) {
    const seg = byId.get(id) ?? earlier.get(id);
    if (!seg) {
      throw bad(
        `block map of device ${need.device} references segment ${id}, which is neither in this RP nor committed in the safe`,
      );
    }
    if (seg.deleted)
      throw bad(
        `block map of device ${need.device} references segment ${id}, which garbage collection deleted`,
      );
    if (seg.condemnedIn !== undefined && seg.condemnedIn <= view)
      throw bad(
        `block map of device ${need.device} references segment ${id}, which generation ${seg.condemnedIn} condemned; the RP was written against generation ${view}, which already lists it as garbage`,
      );
  }
  // a segment of an earlier RP is still there (a GC elsewhere may have run without the catalog)
  await mapLimit(reused, PARALLEL, async (id) => {
    if (!(await store.head(segmentKey(safe, id))))
      throw bad(`block map references segment ${id} of an earlier RP, which is missing from the bucket`);
  });
  for (const [id, need] of framesNeeded) {
    const seg = byId.get(id) ?? earlier.get(id)!;
    if (need.frames > seg.frames) {
      throw bad(
        `block map of device ${need.device} references frame ${need.frames - 1} of segment ${id}, which has ${seg.frames}`,
      );
    }
  }
  return { ...read, newSegments, reusedSegments: reused, maps };
}
