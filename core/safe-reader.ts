/**
 * Reads a Disk Safe through any ObjectStore: recovery points, their manifests, the complete block
 * map of a device at an RP (its own delta laid over its parents'), segment footers, and blocks,
 * verifying every block's checksum. Restore and verify (next) build on this.
 */

import { createHash } from 'node:crypto';
import { CdpError, NotFoundError } from './errors.ts';
import { type BlockMap, decodeBlockMap, type Extent, overlay } from './format/block-map.ts';
import type { SafeKeys } from './format/crypto.ts';
import { decodeFrame, FrameError } from './format/frame.ts';
import {
  type BlockMapRef,
  decodeGeneration,
  type Generation,
  type GenerationRp,
} from './format/generation.ts';
import {
  decodeManifest,
  decodeSafeConfig,
  type Manifest,
  ManifestFormatError,
  type SafeConfig,
} from './format/manifest.ts';
import {
  parseSegmentIndex,
  SEGMENT_FOOTER_READ,
  SEGMENT_TRAILER_BYTES,
  type SegmentEntry,
  type SegmentTrailer,
  splitSegmentFooter,
} from './format/segment.ts';
import {
  generationKey,
  generationPrefix,
  manifestKey,
  manifestPrefix,
  parseKey,
  safeConfigKey,
  segmentKey,
} from './keys.ts';
import type { ObjectStore, ObjectTail } from './ports/object-store.ts';

export class CorruptBlockError extends CdpError {
  constructor(
    reason: string,
    ctx: { safe: string; device: string; block: number; rp: number; segment: string },
  ) {
    super(
      'E_CORRUPT_BLOCK',
      `block ${ctx.block} of device ${ctx.device} at RP ${ctx.rp} (segment ${ctx.segment}): ${reason}`,
      ctx,
      'the safe is damaged here; restore another RP or replicate from a redundant copy',
    );
  }
}

export class SafeFormatError extends CdpError {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super('E_SAFE_FORMAT', message, context);
  }
}

export interface ResolvedDevice {
  readonly device: string;
  readonly rp: number;
  readonly blockSize: number;
  readonly deviceSize: number;
  readonly extents: readonly Extent[];
}

/**
 * One link of a device's restore chain: the map of `rp`, full or a delta over the link before,
 * as one object or as block-range parts (ascending) that together make the map.
 */
export interface ChainLink {
  readonly rp: number;
  readonly full: boolean;
  readonly refs: readonly BlockMapRef[];
  /** For parts: the block range [first, end) of each ref. */
  readonly ranges?: readonly (readonly [number, number])[];
  /** The device as the RP's manifest or generation entry records it: every map must describe it. */
  readonly device?: { readonly sizeBytes: number; readonly blockSize: number };
}

export class ExpiredRpError extends NotFoundError {}

/** Runs a decoder; a format error becomes a SafeFormatError naming the object. */
export function formatChecked<T>(key: string, decode: () => T, context: Record<string, unknown> = {}): T {
  try {
    return decode();
  } catch (e) {
    if (e instanceof ManifestFormatError) throw new SafeFormatError(e.message, { key, ...context });
    throw e;
  }
}

/**
 * The block maps a generation names for a device of a retained RP: each must be a block map of this
 * safe, RP and device (an original map reused, or one a generation rebuilt for it).
 */
function generationMapRefs(
  safe: string,
  gen: number,
  rp: number,
  d: GenerationRp['devices'][number],
): BlockMapRef[] {
  const refs = d.parts ? d.parts.map((p) => p.blockMap) : [d.blockMap!];
  for (const ref of refs) {
    let ok = false;
    try {
      const k = parseKey(ref.key);
      ok =
        (k.kind === 'block-map' || k.kind === 'generation-map') &&
        k.safe === safe &&
        k.rp === rp &&
        k.device === d.id;
    } catch {
      ok = false;
    }
    if (!ok)
      throw new SafeFormatError(
        `generation ${gen} names ${JSON.stringify(ref.key)} as a block map of device ${d.id} in RP ${rp}, which is not one`,
        { rp, device: d.id },
      );
  }
  return refs;
}

/**
 * The block map a manifest names for a device: the key it records, which must be a block map of
 * this safe, RP and device (a manifest cannot point a reader elsewhere).
 */
export function manifestMapRef(safe: string, m: Manifest, d: Manifest['devices'][number]): BlockMapRef {
  let ok = false;
  try {
    const k = parseKey(d.blockMap.key);
    ok = k.kind === 'block-map' && k.safe === safe && k.rp === m.rp && k.device === d.id;
  } catch {
    ok = false;
  }
  if (!ok)
    throw new SafeFormatError(
      `RP ${m.rp} names ${JSON.stringify(d.blockMap.key)} as the block map of device ${d.id}, which is not one`,
      { rp: m.rp, device: d.id },
    );
  return {
    key: d.blockMap.key,
    bytes: d.blockMap.bytes,
    sha256: d.blockMap.sha256,
    extents: d.blockMap.extents,
  };
}

export class SafeReader {
  readonly store: ObjectStore;
  readonly safe: string;
  private readonly keys: SafeKeys | undefined;
  private readonly manifests = new Map<number, Manifest>();
  private readonly footers = new Map<string, Promise<SegmentEntry[]>>();
  private view: Promise<{ gen: Generation | undefined; byRp: Map<number, GenerationRp> }> | undefined;

  constructor(store: ObjectStore, safe: string, keys?: SafeKeys) {
    this.store = store;
    this.safe = safe;
    this.keys = keys;
  }

  async config(): Promise<SafeConfig | undefined> {
    const key = safeConfigKey(this.safe);
    let buf: Buffer;
    try {
      buf = await this.store.get(key);
    } catch (e) {
      if (e instanceof NotFoundError) return undefined;
      throw e;
    }
    return formatChecked(key, () => decodeSafeConfig(buf, `${this.store.location}/safe.json`));
  }

  /**
   * The newest committed compaction generation (docs/FORMAT.md §9a.3), read once per reader: every
   * later call sees the same view, and everything it references outlives the grace period.
   */
  generation(): Promise<Generation | undefined> {
    return this.loadView().then((v) => v.gen);
  }

  private loadView(): Promise<{ gen: Generation | undefined; byRp: Map<number, GenerationRp> }> {
    this.view ??= (async () => {
      const objs = await this.store.list(generationPrefix(this.safe));
      let newest = 0;
      for (const o of objs) {
        try {
          const k = parseKey(o.key);
          if (k.kind === 'generation' && k.generation > newest) newest = k.generation;
        } catch {
          /* not ours */
        }
      }
      if (newest === 0) return { gen: undefined, byRp: new Map() };
      const key = generationKey(this.safe, newest);
      const buf = await this.store.get(key);
      const gen = formatChecked(key, () => decodeGeneration(buf, key));
      if (gen.safe !== this.safe || gen.generation !== newest)
        throw new SafeFormatError(`${key} claims safe ${gen.safe} generation ${gen.generation}`, { key });
      return { gen, byRp: new Map(gen.rps.map((r) => [r.rp, r])) };
    })();
    this.view.catch(() => {
      this.view = undefined;
    });
    return this.view;
  }

  /** The view's entry for `rp` when a generation covers it; throws ExpiredRpError if it expired. */
  private async covered(rp: number): Promise<GenerationRp | undefined> {
    const { gen, byRp } = await this.loadView();
    if (!gen || rp > gen.upTo) return undefined;
    const e = byRp.get(rp);
    if (!e)
      throw new ExpiredRpError(`recovery point ${rp} (expired by retention, generation ${gen.generation})`, {
        safe: this.safe,
        rp,
      });
    return e;
  }

  /** Committed recovery points, oldest first (expired ones left out). */
  async listRps(): Promise<number[]> {
    const [objs, { gen, byRp }] = await Promise.all([
      this.store.list(manifestPrefix(this.safe)),
      this.loadView(),
    ]);
    return objs.flatMap((o) => {
      try {
        const k = parseKey(o.key);
        if (k.kind !== 'manifest') return [];
        if (gen && k.rp <= gen.upTo && !byRp.has(k.rp)) return [];
        return [k.rp];
      } catch {
        return [];
      }
    });
  }

  async manifest(rp: number): Promise<Manifest> {
    const cached = this.manifests.get(rp);
    if (cached) return cached;
    await this.covered(rp);
    const key = manifestKey(this.safe, rp);
    let buf: Buffer;
    try {
      buf = await this.store.get(key);
    } catch (e) {
      if (e instanceof NotFoundError)
        throw new NotFoundError(`recovery point ${rp}`, { safe: this.safe, rp });
      throw e;
    }
    const m = formatChecked(key, () => decodeManifest(buf, key), { rp });
    if (m.safe !== this.safe || m.rp !== rp) {
      throw new SafeFormatError(`${key} claims safe ${m.safe} RP ${m.rp}`, { key, rp });
    }
    this.manifests.set(rp, m);
    return m;
  }

  /** The block map a link names (its parts concatenated), each object checked against its size and SHA-256. */
  async blockMap(link: ChainLink, device: string): Promise<BlockMap> {
    const maps = await Promise.all(link.refs.map((ref) => this.mapObject(link.rp, ref, device)));
    if (link.device) {
      const want = link.device;
      maps.forEach((m, i) => {
        if (m.deviceSize !== want.sizeBytes || m.blockSize !== want.blockSize)
          throw new SafeFormatError(
            `block map ${link.refs[i]!.key} describes ${m.deviceSize} bytes in ${m.blockSize}-byte blocks, RP ${link.rp} records device ${device} as ${want.sizeBytes} bytes in ${want.blockSize}-byte blocks`,
            { key: link.refs[i]!.key, rp: link.rp, device },
          );
      });
    }
    if (maps.length === 1) return maps[0]!;
    return {
      blockSize: maps[0]!.blockSize,
      deviceSize: maps[0]!.deviceSize,
      extents: maps.flatMap((m) => m.extents),
    };
  }

  private async mapObject(rp: number, ref: BlockMapRef, device: string): Promise<BlockMap> {
    const key = ref.key;
    const k = (() => {
      try {
        return parseKey(key);
      } catch {
        return undefined;
      }
    })();
    if (!k || k.safe !== this.safe || (k.kind !== 'block-map' && k.kind !== 'generation-map'))
      throw new SafeFormatError(`RP ${rp} names ${key}, which is not a block map of safe ${this.safe}`, {
        key,
        rp,
      });
    let buf: Buffer;
    try {
      buf = await this.store.get(key);
    } catch (e) {
      if (e instanceof NotFoundError)
        throw new SafeFormatError(`block map ${key} of RP ${rp} is missing`, { key, rp, device });
      throw e;
    }
    if (buf.length !== ref.bytes || createHash('sha256').update(buf).digest('hex') !== ref.sha256) {
      throw new SafeFormatError(`block map ${key} does not match its manifest (truncated or altered)`, {
        key,
        rp,
        device,
      });
    }
    try {
      return decodeBlockMap(buf);
    } catch (e) {
      throw new SafeFormatError(`block map ${key}: ${(e as Error).message}`, { key, rp, device });
    }
  }

  /**
   * The maps that make up `device` at `rp`, oldest first: a full map and the deltas over it. Above
   * the generation's upTo the manifests' parents are followed; at or below it, the generation's.
   */
  async chain(rp: number, device: string): Promise<ChainLink[]> {
    const chain: ChainLink[] = [];
    const seen = new Set<number>();
    for (let r: number | null = rp; r !== null; ) {
      if (seen.has(r)) throw new SafeFormatError(`RP ${rp} has a parent cycle`, { rp });
      seen.add(r);
      const own = await this.link(r, device);
      if (!own) throw new NotFoundError(`device ${device} in RP ${rp}`, { safe: this.safe, rp, device });
      chain.unshift(own.link);
      r = own.parent;
    }
    return chain;
  }

  /**
   * The map of `device` in `rp` itself (no walk), and the RP it is a delta over (null for a full
   * map: a generation's full, the first RP, or the first RP that holds the device).
   */
  async link(rp: number, device: string): Promise<{ link: ChainLink; parent: number | null } | undefined> {
    const e = await this.covered(rp);
    if (e) {
      const g = e.devices.find((x) => x.id === device);
      if (!g) return undefined;
      const { gen } = await this.loadView();
      const refs = generationMapRefs(this.safe, gen!.generation, rp, g);
      const ranges = g.parts?.map((p) => [p.first, p.end] as const);
      const sizes = { sizeBytes: g.sizeBytes, blockSize: g.blockSize };
      return { link: { rp, full: g.full, refs, ranges, device: sizes }, parent: g.full ? null : e.parent };
    }
    const m = await this.manifest(rp);
    const d = m.devices.find((x) => x.id === device);
    if (!d) return undefined;
    // a full map does not need its parent (which may be unreadable); a delta does
    const before =
      m.parent === null
        ? undefined
        : d.full === true
          ? await this.deviceAt(m.parent, device).catch(() => undefined)
          : await this.deviceAt(m.parent, device);
    // a device keeps its size and block size from its first backup on: a delta over another
    // geometry would misplace its blocks (and a planner would split the device two ways)
    if (before && (before.sizeBytes !== d.sizeBytes || before.blockSize !== d.blockSize))
      throw new SafeFormatError(
        `RP ${rp} records device ${device} as ${d.sizeBytes} bytes in ${d.blockSize}-byte blocks, its parent RP ${m.parent} as ${before.sizeBytes} bytes in ${before.blockSize}-byte blocks`,
        { rp, device },
      );
    const full = m.parent === null || d.full === true || !before;
    const sizes = { sizeBytes: d.sizeBytes, blockSize: d.blockSize };
    return {
      link: { rp, full, refs: [manifestMapRef(this.safe, m, d)], device: sizes },
      parent: full ? null : m.parent,
    };
  }

  /** The device as RP `rp` records it (its generation entry or manifest), if the RP holds it. */
  private async deviceAt(
    rp: number,
    device: string,
  ): Promise<{ sizeBytes: number; blockSize: number } | undefined> {
    const e = await this.covered(rp);
    return (e ? e.devices : (await this.manifest(rp)).devices).find((x) => x.id === device);
  }

  /** The device's complete map at `rp`: the full map with every later delta laid over it. */
  async resolve(rp: number, device: string): Promise<ResolvedDevice> {
    let extents: Extent[] = [];
    let last: BlockMap | undefined;
    const chain = await this.chain(rp, device);
    // the maps of the chain are read together, then laid over each other oldest first
    const maps = chain.map((link) => this.blockMap(link, device));
    for (const m of maps) m.catch(() => undefined);
    for (const [i, link] of chain.entries()) {
      last = await maps[i]!;
      extents = link.full ? [...last.extents] : overlay(extents, last.extents);
    }
    return { device, rp, blockSize: last!.blockSize, deviceSize: last!.deviceSize, extents };
  }

  /** The frames of a segment, from its footer (two ranged reads of its tail; cached). */
  segmentEntries(segment: string): Promise<SegmentEntry[]> {
    let p = this.footers.get(segment);
    if (!p) {
      p = this.readFooter(segment);
      this.footers.set(segment, p);
      p.catch(() => this.footers.delete(segment));
    }
    return p;
  }

  /** A segment's size and trailer (frame count, index place): one 32-byte read from its end, not cached. */
  async segmentTrailer(segment: string): Promise<{ size: number; trailer: SegmentTrailer }> {
    const { key, tail } = await this.segmentTail(segment, SEGMENT_TRAILER_BYTES);
    try {
      return { size: tail.size, trailer: splitSegmentFooter(tail.bytes, tail.size).trailer };
    } catch (e) {
      throw new SafeFormatError(`segment ${segment}: ${(e as Error).message}`, { key, segment });
    }
  }

  private async segmentTail(segment: string, length: number): Promise<{ key: string; tail: ObjectTail }> {
    const key = segmentKey(this.safe, segment);
    try {
      return { key, tail: await this.store.getTail(key, length) };
    } catch (e) {
      if (e instanceof NotFoundError)
        throw new SafeFormatError(`segment ${segment} is missing`, { key, segment });
      throw e;
    }
  }

  /** The trailer and index in one read from the segment's end (a second only for a huge index). */
  private async readFooter(segment: string): Promise<SegmentEntry[]> {
    const { key, tail } = await this.segmentTail(segment, SEGMENT_FOOTER_READ);
    try {
      const { trailer, index } = splitSegmentFooter(tail.bytes, tail.size);
      return parseSegmentIndex(
        index ?? (await this.store.getRange(key, trailer.indexOffset, trailer.indexLength)),
        trailer,
        { segment, safe: this.safe },
      );
    } catch (e) {
      throw new SafeFormatError(`segment ${segment}: ${(e as Error).message}`, { key, segment });
    }
  }

  /**
   * Reads every stored block of a resolved device, calling `onBlock` with the block number and
   * its bytes in ascending block order. Blocks not passed are zero. One ranged read per extent.
   */
  async readBlocks(
    r: ResolvedDevice,
    onBlock: (block: number, data: Buffer) => Promise<void> | void,
  ): Promise<void> {
    const decode = { dataKey: this.keys?.dataKey, idKey: this.keys?.idKey };
    for (const e of r.extents) {
      if (e.kind === 'zero') continue;
      const ctx = { safe: this.safe, device: r.device, rp: r.rp, segment: e.segment };
      const entries = await this.segmentEntries(e.segment);
      const first = entries[e.frame];
      const lastEntry = entries[e.frame + e.count - 1];
      if (!first || !lastEntry)
        throw new CorruptBlockError('frame not in segment', { ...ctx, block: e.first });
      const start = first.offset;
      const buf = await this.store.getRange(
        segmentKey(this.safe, e.segment),
        start,
        lastEntry.offset + lastEntry.frameLength - start,
      );
      for (let i = 0; i < e.count; i++) {
        const entry = entries[e.frame + i]!;
        const block = e.first + i;
        let plain: Buffer;
        try {
          const f = decodeFrame(buf, entry.offset - start, decode);
          if (!f.header.identity.equals(entry.identity))
            throw new FrameError('frame does not match the segment index');
          plain = f.plain;
        } catch (err) {
          if (err instanceof FrameError) throw new CorruptBlockError(err.message, { ...ctx, block });
          throw err;
        }
        await onBlock(block, plain);
      }
    }
  }

  /** The whole device image at `rp` in memory: for small devices (tests, the demo); restores stream. */
  async readImage(rp: number, device: string): Promise<Buffer> {
    const r = await this.resolve(rp, device);
    const img = Buffer.alloc(r.deviceSize);
    await this.readBlocks(r, (block, data) => {
      data.copy(img, block * r.blockSize);
    });
    return img;
  }
}
