/**
 * Multi-Point Replication of one safe: copies the committed RPs that a destination lacks, oldest
 * first, without re-reading devices or recompressing (no key needed), the manifest strictly last,
 * so the destination never shows a partial RP. It holds the destination's write lock and, where it
 * can, a read lock on the source (docs/FORMAT.md §7a).
 *
 * It checks what it copies: every block map against its manifest, every segment whole (its
 * binding, its index, every frame; every block too in an unencrypted safe or with the key). A
 * damaged RP is refused by name, and nothing after it is copied. A segment the RP uses that the
 * destination has retired (condemned or deleted by its own compaction) is copied again under a new
 * id, and the RP's maps are rewritten to use it: the destination never references its garbage.
 * A killed run leaves nothing partial and the next run goes on where it stopped.
 */
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { forEachLimit } from '#core/concurrency.ts';
import { CdpError } from '#core/errors.ts';
import { decodeBlockMap, encodeBlockMap } from '#core/format/block-map.ts';
import { FORMAT_VERSION } from '#core/format/constants.ts';
import type { SafeKeys } from '#core/format/crypto.ts';
import { decodeManifest, decodeSafeConfig, encodeManifest, type Manifest } from '#core/format/manifest.ts';
import { blockMapKey, manifestKey, parseKey, safeConfigKey, segmentKey } from '#core/keys.ts';
import { acquireLock } from '#core/locks.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import { manifestMapRef, SafeReader } from '#core/safe-reader.ts';
import { checkSegmentBytes, rebind } from '#core/segment-check.ts';
import type { RateLimiter } from '../backup/rate-limiter.ts';
import { withReadLock } from '../read-lock.ts';

export interface ReplicateOptions {
  readonly limiter?: RateLimiter;
  /** Chunk of a segment copy. @default 8 MiB */
  readonly chunkBytes?: number;
  /**
   * Objects up to this size go in one request when no rate limit is set (like rclone's upload
   * cutoff): a 32 MiB segment is one PUT instead of a multipart upload of 5 MiB parts.
   * @default 64 MiB
   */
  readonly uploadCutoff?: number;
  /** Objects copied in parallel. @default 4 */
  readonly parallel?: number;
  /** The safe's keys: every block of an encrypted safe is then checked too. */
  readonly keys?: SafeKeys;
  onProgress?(copiedBytes: number, pendingBytes: number): void;
  log?(msg: string): void;
}

export interface ReplicateResult {
  readonly safe: string;
  readonly from: string;
  readonly to: string;
  /** RPs copied by this run. */
  readonly copiedRps: number[];
  readonly copiedBytes: number;
  /** Objects already at the destination (from an earlier, interrupted run). */
  readonly skippedObjects: number;
  /** Segments copied under a new id because the destination had retired them. */
  readonly rescuedSegments: number;
  /** Whether every block was checked (false: an encrypted safe without its key: structure only). */
  readonly blocksChecked: boolean;
  readonly newestRp: number | null;
  readonly durationMs: number;
}

export class ReplicationError extends CdpError {
  constructor(message: string, context: Record<string, unknown> = {}, code = 'E_SAFE_ACCESS') {
    super(code, message, context);
  }
}

/** Writes `body` at `key` of `dst`, in chunks through the limiter when one is set. */
async function writeObject(dst: ObjectStore, key: string, body: Buffer, o: ReplicateOptions): Promise<void> {
  const chunk = o.chunkBytes ?? 8 * 1024 * 1024;
  const whole = o.limiter ? chunk : Math.max(chunk, o.uploadCutoff ?? 64 * 1024 * 1024);
  if (body.length <= whole) {
    await o.limiter?.take(body.length);
    await dst.put(key, body);
    return;
  }
  const w = dst.openWriter(key);
  try {
    for (let at = 0; at < body.length; at += chunk) {
      const part = body.subarray(at, Math.min(body.length, at + chunk));
      await o.limiter?.take(part.length);
      await w.write(part);
    }
    await w.finish();
  } catch (e) {
    await w.abort().catch(() => undefined);
    throw e;
  }
}

/** What a destination lacks: the RPs to copy and their bytes. */
export async function pendingOf(
  src: SafeReader,
  dst: ObjectStore,
): Promise<{
  rps: number[];
  bytes: number;
  newestSource: number | null;
  newestDestination: number | null;
  /** The RPs the destination has. */
  have: Set<number>;
}> {
  const there = new SafeReader(dst, src.safe);
  const have = new Set(await there.listRps());
  // an RP the destination's own compaction covers is there or was expired by its retention
  const upTo = (await there.generation())?.upTo ?? 0;
  const all = await src.listRps();
  const rps = all.filter((rp) => !have.has(rp) && rp > upTo);
  let bytes = 0;
  for (const rp of rps) {
    const m = await src.manifest(rp).catch(() => undefined);
    if (!m) continue;
    bytes +=
      m.segments.reduce((a, s) => a + s.bytes, 0) + m.devices.reduce((a, d) => a + d.blockMap.bytes, 0);
  }
  return {
    rps,
    bytes,
    newestSource: all.at(-1) ?? null,
    newestDestination: [...have].sort((a, b) => a - b).at(-1) ?? null,
    have,
  };
}

/** The destination's view: segments it lists and those its newest generation calls garbage. */
async function destinationView(
  dst: ObjectStore,
  safe: string,
): Promise<{ listed: Map<string, number>; retired: Set<string>; garbage: Set<string>; view: number }> {
  const listed = new Map<string, number>();
  for (const o of await dst.list(`safes/${safe}/seg/`)) {
    try {
      const k = parseKey(o.key);
      if (k.kind === 'segment') listed.set(k.segment, o.size);
    } catch {
      /* not ours */
    }
  }
  const retired = new Set<string>();
  const gen = await new SafeReader(dst, safe).generation();
  for (const g of gen?.garbage ?? []) {
    try {
      const k = parseKey(g.key);
      if (k.kind === 'segment') retired.add(k.segment);
    } catch {
      /* not ours */
    }
  }
  return {
    listed,
    retired,
    garbage: new Set((gen?.garbage ?? []).map((g) => g.key)),
    view: gen?.generation ?? 0,
  };
}

export async function replicateSafe(
  src: ObjectStore,
  dst: ObjectStore,
  safe: string,
  o: ReplicateOptions = {},
): Promise<ReplicateResult> {
  const cfgKey = safeConfigKey(safe);
  const srcCfgBody = await src.get(cfgKey).catch(() => {
    throw new ReplicationError(`${src.location} is not a safe (no safe.json)`, { safe });
  });
  const srcCfg = decodeSafeConfig(srcCfgBody, `${src.location}/safe.json`);
  const lock = await acquireLock(dst, safe, {
    kind: 'write',
    purpose: 'replicate',
    owner: `cdp-agent replicate on ${hostname()}`,
    log: o.log,
  });
  try {
    return await withReadLock(src, safe, 'replicate', () =>
      replicateLocked(src, dst, safe, srcCfgBody, srcCfg, o, lock),
    );
  } finally {
    await lock.release();
  }
}

async function replicateLocked(
  src: ObjectStore,
  dst: ObjectStore,
  safe: string,
  srcCfgBody: Buffer,
  srcCfg: ReturnType<typeof decodeSafeConfig>,
  o: ReplicateOptions,
  lock: Awaited<ReturnType<typeof acquireLock>>,
): Promise<ReplicateResult> {
  const t0 = Date.now();
  const cfgKey = safeConfigKey(safe);
  const reader = new SafeReader(src, safe);
  const dstHead = await dst.head(cfgKey);
  if (dstHead) {
    const dstCfg = decodeSafeConfig(await dst.get(cfgKey), `${dst.location}/safe.json`);
    if (dstCfg.createdAt !== srcCfg.createdAt || dstCfg.owner !== srcCfg.owner) {
      throw new ReplicationError(
        `${dst.location} holds another safe ${dstCfg.safe} (created ${dstCfg.createdAt} by ${dstCfg.owner}); not replicating ${src.location} over it`,
        { safe },
      );
    }
  } else {
    await dst.putIfAbsent(cfgKey, srcCfgBody);
  }
  const pending = await pendingOf(reader, dst);
  // the destination's view, read under its write lock: a copied RP references nothing it retired
  const { listed, retired, garbage, view } = await destinationView(dst, safe);
  // RPs the source's own compaction covers are read through its view: their original maps (and
  // segments) may be gone there, replaced by the generation's
  const sourceUpTo = (await reader.generation())?.upTo ?? 0;
  let copied = 0;
  let done = 0;
  let skipped = 0;
  let rescued = 0;
  let blocksChecked = true;
  const progress = (n: number): void => {
    done += n;
    o.onProgress?.(done, pending.bytes);
  };
  const copiedRps: number[] = [];
  const present = new Set(pending.have);
  /** Segments this run made usable at the destination: source id → destination id. */
  const placed = new Map<string, string>();
  for (const rp of pending.rps) {
    const damaged = (reason: string) =>
      new ReplicationError(
        `RP ${rp} of ${src.location} is damaged (${reason}); it is not replicated to ${dst.location}, nor any RP after it`,
        { safe, rp },
        'E_DAMAGED',
      );
    let m: Manifest;
    try {
      m = await reader.manifest(rp);
    } catch (e) {
      if (e instanceof CdpError) throw damaged(e.message);
      throw e;
    }
    // the source's retention may have merged the parent away before it reached this destination:
    // then the RP goes there with full maps (each device resolved at the source), needing no parent
    const detached =
      (m.parent !== null && !present.has(m.parent) && !m.devices.every((d) => d.full === true)) ||
      rp <= sourceUpTo;
    if (detached)
      o.log?.(
        `RP ${rp}: copied with full maps (its parent is not at ${dst.location}, or the source compacted it)`,
      );
    // the maps, checked against the manifest (or resolved, when detached); the segments they use
    const maps: { device: Manifest['devices'][number]; body: Buffer }[] = [];
    const used = new Set<string>();
    try {
      for (const d of m.devices) {
        if (detached) {
          const r = await reader.resolve(rp, d.id);
          for (const e of r.extents) if (e.kind === 'data') used.add(e.segment);
          const extents = r.extents.filter((e) => e.kind === 'data');
          maps.push({
            device: { ...d, full: true },
            body: encodeBlockMap({ blockSize: r.blockSize, deviceSize: r.deviceSize, extents }),
          });
          continue;
        }
        const ref = manifestMapRef(safe, m, d);
        const map = await reader.blockMap({ rp, full: false, refs: [ref] }, d.id);
        for (const e of map.extents) if (e.kind === 'data') used.add(e.segment);
        maps.push({ device: d, body: await src.get(ref.key) });
      }
    } catch (e) {
      if (e instanceof CdpError) throw damaged(e.message);
      throw e;
    }
    const fresh = new Set(m.segments.map((s) => s.id));
    const rename = new Map<string, string>();
    const copySegment = async (id: string, as: string): Promise<void> => {
      let body: Buffer;
      try {
        body = await src.get(segmentKey(safe, id));
      } catch (e) {
        if (e instanceof CdpError && e.code === 'E_NOT_FOUND') throw damaged(`segment ${id} is missing`);
        throw e;
      }
      let checked: Awaited<ReturnType<typeof checkSegmentBytes>>;
      try {
        checked = await checkSegmentBytes(body, { segment: id, safe }, o.keys);
      } catch (e) {
        if (e instanceof CdpError) throw damaged(e.message);
        throw e;
      }
      if (!checked.blocksChecked) blocksChecked = false;
      const out = as === id ? body : rebind(body, checked, { segment: as, safe });
      await writeObject(dst, segmentKey(safe, as), out, o);
      copied += out.length;
      progress(out.length);
    };
    await forEachLimit([...used], o.parallel ?? 4, async (id) => {
      const already = placed.get(id);
      if (already) {
        if (already !== id) rename.set(id, already);
        return;
      }
      const atDst = listed.get(id);
      if (atDst !== undefined && !retired.has(id)) {
        // there already: from an earlier RP, or from an interrupted run (written atomically)
        if (fresh.has(id)) {
          skipped++;
          progress(atDst);
        }
        placed.set(id, id);
        return;
      }
      if (fresh.has(id) && atDst === undefined) {
        await copySegment(id, id);
        placed.set(id, id);
        return;
      }
      // the destination retired it (condemned or deleted): never reference it there; a copy under a new id
      const as = randomBytes(32).toString('hex');
      await copySegment(id, as);
      rescued++;
      rename.set(id, as);
      placed.set(id, as);
      o.log?.(`RP ${rp}: segment ${id} is retired at ${dst.location}; copied as ${as}`);
    });
    // the manifest as the source has it, but for its view: the generation it was written against is
    // the destination's, whose generations are its own
    let manifest = encodeManifest({ ...m, view });
    // a map already at the destination is used only if it is not garbage there and holds these bytes
    let rewrite = rename.size > 0 || detached;
    for (const { device, body } of rewrite ? [] : maps) {
      if (garbage.has(device.blockMap.key)) rewrite = true;
      else if ((await dst.head(device.blockMap.key)) !== undefined) {
        const there = await dst.get(device.blockMap.key).catch(() => undefined);
        if (!there?.equals(body)) rewrite = true;
      }
    }
    if (!rewrite) {
      for (const { device, body } of maps) {
        if (await dst.putIfAbsent(device.blockMap.key, body)) copied += body.length;
        else skipped++; // there already, the same bytes (checked above)
        progress(body.length);
      }
    } else {
      // maps that use a renamed segment, full maps of a detached RP, or maps whose name is garbage
      // at the destination: written under this run's name, and the manifest with them
      const run = randomBytes(8).toString('hex');
      const devices: Manifest['devices'] = [];
      for (const { device, body } of maps) {
        const map = decodeBlockMap(body);
        const extents = map.extents.map((e) =>
          e.kind === 'data' && rename.has(e.segment) ? { ...e, segment: rename.get(e.segment)! } : e,
        );
        const out = encodeBlockMap({ ...map, extents });
        const key = blockMapKey(safe, rp, device.id, run);
        if (!(await dst.putIfAbsent(key, out)))
          throw new ReplicationError(`block map ${key} exists at ${dst.location} already`, { safe, rp });
        copied += out.length;
        devices.push({
          ...device,
          blockMap: {
            key,
            bytes: out.length,
            sha256: createHash('sha256').update(out).digest('hex'),
            extents: extents.length,
          },
        });
      }
      const segments = m.segments.map((s) =>
        rename.has(s.id) ? { ...s, id: rename.get(s.id)!, key: segmentKey(safe, rename.get(s.id)!) } : s,
      );
      for (const [from, to] of rename)
        if (!fresh.has(from)) {
          const size = (await dst.head(segmentKey(safe, to)))?.size ?? 0;
          const frames = (await new SafeReader(dst, safe).segmentEntries(to)).length;
          segments.push({ id: to, key: segmentKey(safe, to), bytes: size, frames });
        }
      manifest = encodeManifest({ ...m, version: FORMAT_VERSION, run, view, devices, segments });
    }
    // the manifest last: the RP exists at the destination only now
    await lock.check();
    if (!(await dst.putIfAbsent(manifestKey(safe, rp), manifest))) {
      // committed there meanwhile (an earlier run that was killed after its create): fine only if it is this RP
      const there = decodeManifest(await dst.get(manifestKey(safe, rp)), manifestKey(safe, rp));
      if (there.createdAt !== m.createdAt || there.agent.id !== m.agent.id)
        throw new ReplicationError(`RP ${rp} at ${dst.location} is another RP than the source's`, {
          safe,
          rp,
        });
    }
    copiedRps.push(rp);
    present.add(rp);
  }
  return {
    safe,
    from: src.location,
    to: dst.location,
    copiedRps,
    copiedBytes: copied,
    skippedObjects: skipped,
    rescuedSegments: rescued,
    blocksChecked,
    newestRp: pending.newestSource,
    durationMs: Date.now() - t0,
  };
}
