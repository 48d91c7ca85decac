/**
 * Use case: take one recovery point of a group of devices into a safe (docs/FORMAT.md §7, "Write
 * ordering"), under the safe's write lock (core/locks.ts): check the chain it builds on, then
 * segments, then block maps, then the manifest (atomic create), then local state.
 */
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { readDamagedFrames } from '#core/damage.ts';
import { CdpError, ConflictError } from '#core/errors.ts';
import { type Extent, encodeBlockMap, pushBlock } from '#core/format/block-map.ts';
import {
  DEFAULT_BLOCK_SIZE,
  DEFAULT_SEGMENT_BYTES,
  FORMAT_VERSION,
  isValidBlockSize,
} from '#core/format/constants.ts';
import type { SafeKeys } from '#core/format/crypto.ts';
import { framesRoom } from '#core/format/frame.ts';
import { encodeManifest, type Manifest, type ManifestDevice } from '#core/format/manifest.ts';
import { blockMapKey, manifestKey, parseKey } from '#core/keys.ts';
import { acquireLock, type HeldLock } from '#core/locks.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import { SafeReader } from '#core/safe-reader.ts';
import { CtsReader, CtsWriter } from '../state/change-tracking.ts';
import { DedupIndex } from '../state/dedup-index.ts';
import { FooterChecks } from '../state/footer-checks.ts';
import { listSegmentSizes, rebuildChangeTracking, rebuildDedupIndex } from '../state/rebuild.ts';
import { UncommittedSegments } from '../state/uncommitted.ts';
import { WorkerPool } from '../worker-pool.ts';
import { checkChain } from './chain-check.ts';
import { chunksTouched, loadChangedList } from './changed-list.ts';
import { DeviceError, type DeviceSpec, deviceSize, openDevice, readFully } from './device.ts';
import { openSafe } from './open-safe.ts';
import type { RateLimiter } from './rate-limiter.ts';
import type { ScanRequest, ScanResult, ScanSettings } from './scan-worker.ts';
import { SegmentPacker } from './segment-packer.ts';

export { SafeAccessError } from './open-safe.ts';

export interface BackupDeps {
  readonly store: ObjectStore;
  readonly safe: string;
  /** This safe's folder in the agent state directory. */
  readonly stateDir: string;
  readonly agent: { readonly id: string; readonly version: string; readonly host: string };
  /** Runs a --pre/--post-snapshot command; rejects when it fails. */
  readonly runHook: (cmd: string) => Promise<void>;
  readonly onProgress?: (p: { device: string; scanned: number; total: number }) => void;
  readonly log?: (msg: string) => void;
  readonly now?: () => Date;
}

export interface BackupInput {
  readonly devices: readonly DeviceSpec[];
  /** Block size for devices at their first backup. @default 64 KiB */
  readonly blockSize?: number;
  /** 32-byte master key; the safe is encrypted if created with one. */
  readonly key?: Buffer;
  readonly preSnapshot?: string;
  readonly postSnapshot?: string;
  readonly limiter?: RateLimiter;
  readonly segmentBytes?: number;
  readonly workers?: number;
  /** Write to a safe owned by another agent id (after a reinstall). */
  readonly takeOver?: boolean;
}

export interface BackupResult {
  readonly rp: number;
  readonly parent: number | null;
  readonly manifest: Manifest;
  readonly rebuiltState: string[];
  /** What the operator should know: a chain not built on (and why), blocks stored again. */
  readonly notes: string[];
}

/**
 * Bytes read and scanned as one unit. 1 MiB: half the memory of 2 MiB chunks for the same
 * read-ahead, and the same CPU time (2 GiB full and incremental, 64 GiB sparse).
 */
const CHUNK = 1024 * 1024;

/** A block whose change-tracking entry is this is read again and treated as changed (a damaged frame). */
const FORCE = Buffer.alloc(8, 0xff);

type ScannedDevice = Omit<ManifestDevice, 'blockMap'> & { extents: Extent[] };

interface DeviceRun {
  readonly spec: DeviceSpec;
  readonly size: number;
  readonly blockSize: number;
  /** Change-tracking state of the parent RP; undefined for a full backup of this device. */
  readonly old?: CtsReader;
  /** A full map although the RP has a parent that holds the device (its chain could not be built on). */
  readonly full: boolean;
  /** Block ranges to read again whatever the change tracking says (frames found damaged). */
  readonly heal: readonly (readonly [number, number])[];
}

export async function runBackup(deps: BackupDeps, input: BackupInput): Promise<BackupResult> {
  // bad input is refused before anything is written, the lock included
  if (input.devices.length === 0)
    throw new CdpError('E_USAGE', 'give at least one device to back up (--device PATH[=ID])');
  const ids = new Set<string>();
  for (const spec of input.devices) {
    if (ids.has(spec.id))
      throw new DeviceError(spec.path, `id '${spec.id}' is used twice`, 'name them: --device PATH=ID');
    ids.add(spec.id);
  }
  const sizes = new Map<string, number>();
  for (const spec of input.devices) sizes.set(spec.id, await deviceSize(spec.path));
  const lock = await acquireLock(deps.store, deps.safe, {
    kind: 'write',
    purpose: 'backup',
    owner: deps.agent.id,
    log: deps.log,
  });
  try {
    return await backupLocked(deps, input, sizes, lock);
  } finally {
    await lock.release();
  }
}

async function backupLocked(
  deps: BackupDeps,
  input: BackupInput,
  sizes: ReadonlyMap<string, number>,
  lock: HeldLock,
): Promise<BackupResult> {
  const t0 = Date.now();
  const log = deps.log ?? (() => undefined);
  const notes: string[] = [];
  const note = (m: string): void => {
    notes.push(m);
    log(m);
  };
  const run = randomBytes(8).toString('hex');
  // the safe's segments (for the dedup index) are listed while the safe is opened and read
  const listing = listSegmentSizes(new SafeReader(deps.store, deps.safe));
  listing.catch(() => undefined);
  const { keys } = await openSafe(deps.store, {
    safe: deps.safe,
    owner: deps.agent.id,
    key: input.key,
    takeOver: input.takeOver,
    now: deps.now,
  });
  const removed = await deps.store.cleanTemporaries(new Date(Date.now() - 24 * 3600_000));
  if (removed > 0) log(`removed ${removed} temporary files left by writers that are gone`);
  const reader = new SafeReader(deps.store, deps.safe, keys);
  // the view: taken after the lock, so GC either sees the lock or this view has its garbage
  const gen = await reader.generation();
  const view = gen?.generation ?? 0;
  const rps = await reader.listRps();
  const parent = rps.length > 0 ? rps[rps.length - 1]! : null;
  const rp = (parent ?? 0) + 1;
  let parentManifest: Manifest | undefined;
  if (parent !== null) {
    try {
      parentManifest = await reader.manifest(parent);
    } catch (e) {
      if (!(e instanceof CdpError)) throw e;
      note(`RP ${parent} cannot be read (${e.message}): every device is read in full for RP ${rp}`);
    }
  }
  const rebuiltState: string[] = [];
  const listed = await listing;
  const condemned = new Set<string>();
  for (const g of gen?.garbage ?? []) {
    try {
      const k = parseKey(g.key);
      if (k.kind === 'segment') condemned.add(k.segment);
    } catch {
      /* not a key of ours */
    }
  }
  const damaged = await readDamagedFrames(deps.store, deps.safe, log);
  const footers = new FooterChecks(join(deps.stateDir, 'checked-footers.txt'));

  // dedup index: load, rebuild if missing; only segments that are listed and not garbage are used
  const usable = new Set([...listed.keys()].filter((id) => !condemned.has(id)));
  const dedup = new DedupIndex(join(deps.stateDir, 'dedup.bin'));
  if (!dedup.load()) {
    await rebuildDedupIndex(reader, dedup, usable);
    if (usable.size > 0) rebuiltState.push('dedup index');
  } else dedup.prune(usable);

  // a dedup target must be a segment whose footer reads (checked once per state directory and
  // segment, and while its listed size is the size it had then), at a frame not known damaged
  const own = new Set<string>();
  const verdicts = new Map<string, Promise<boolean>>();
  const segmentUsable = (id: string): Promise<boolean> => {
    if (own.has(id)) return Promise.resolve(true);
    let v = verdicts.get(id);
    if (!v) {
      v = (async () => {
        const size = listed.get(id);
        const checked = footers.checkedSize(id);
        if (size === undefined) return false;
        if (checked !== undefined) return checked === size;
        try {
          await reader.segmentEntries(id);
          footers.mark(id, size);
          return true;
        } catch (e) {
          if (!(e instanceof CdpError)) throw e;
          log(`segment ${id} is not used for deduplication: ${e.message}`);
          return false;
        }
      })();
      verdicts.set(id, v);
    }
    return v;
  };
  const dedupOk = async (loc: { segment: string; frame: number }): Promise<boolean> =>
    !damaged.has(loc.segment, loc.frame) && (await segmentUsable(loc.segment));

  const runs: DeviceRun[] = [];
  for (const spec of input.devices) {
    const size = sizes.get(spec.id)!;
    const prev = parentManifest?.devices.find((d) => d.id === spec.id);
    if (prev && prev.sizeBytes !== size) {
      throw new DeviceError(
        spec.path,
        `size changed from ${prev.sizeBytes} to ${size} bytes since RP ${parent}`,
        'back it up into a new safe',
      );
    }
    const ctsPath = join(deps.stateDir, `${spec.id}.cts`);
    let old = prev ? await CtsReader.open(ctsPath) : undefined;
    // an unreadable parent: keep the block size the state file recorded at its first backup
    const remembered = parentManifest
      ? undefined
      : await CtsReader.open(ctsPath).then(async (c) => {
          const bs = c?.header.blockSize;
          await c?.close();
          return bs;
        });
    const blockSize = prev?.blockSize ?? remembered ?? input.blockSize ?? DEFAULT_BLOCK_SIZE;
    if (!isValidBlockSize(blockSize))
      throw new DeviceError(spec.path, `block size ${blockSize} is not a power of two from 4 KiB to 512 KiB`);
    if (prev && input.blockSize && input.blockSize !== prev.blockSize)
      log(`device ${spec.id}: keeps block size ${prev.blockSize} (set at its first backup)`);
    // a device of an unreadable parent, or whose chain fails its check, gets a full map
    let full = parent !== null && parentManifest === undefined;
    let heal: readonly (readonly [number, number])[] = [];
    if (prev) {
      const check = await checkChain(reader, parent!, spec.id, listed, footers, damaged);
      if (!check.ok) {
        if (check.segment) verdicts.set(check.segment, Promise.resolve(false));
        await old?.close();
        old = undefined;
        full = true;
        note(
          `device ${spec.id}: RP ${parent}'s chain cannot be built on (${check.reason}): reading the whole device for RP ${rp}`,
        );
      } else {
        heal = check.heal;
        const h = old?.header;
        if (!h || h.rp !== parent || h.blockSize !== blockSize || h.deviceSize !== size) {
          await old?.close();
          log(`device ${spec.id}: rebuilding change-tracking state from RP ${parent}`);
          await rebuildChangeTracking(reader, check.parent, ctsPath);
          rebuiltState.push(`change tracking of ${spec.id}`);
          old = await CtsReader.open(ctsPath);
        }
        if (heal.length > 0) {
          const blocks = heal.reduce((n, [, c]) => n + c, 0);
          note(
            `device ${spec.id}: ${blocks} block(s) whose stored frames verify found damaged are stored again from the device`,
          );
        }
      }
    }
    runs.push({ spec, size, blockSize, old, full, heal });
  }

  const uncommitted = new UncommittedSegments(join(deps.stateDir, 'uncommitted.json'), usable);
  const packer = new SegmentPacker(deps.store, deps.safe, {
    targetBytes: input.segmentBytes ?? DEFAULT_SEGMENT_BYTES,
    encrypted: keys !== undefined,
    limiter: input.limiter,
    onDurable: (s) => {
      dedup.addSegment(s.id, s.identities);
      footers.mark(s.id, s.bytes);
      uncommitted.add({ id: s.id, key: s.key, bytes: s.bytes, frames: s.frames });
    },
  });
  const ctsWriters: CtsWriter[] = [];
  const devices: ScannedDevice[] = [];
  let finalDevices: ManifestDevice[] = [];
  let scannedBytes = 0;
  let changedBytes = 0;
  let hookError: unknown;
  try {
    if (input.preSnapshot) await deps.runHook(input.preSnapshot);
    try {
      for (const [i, r] of runs.entries()) {
        if (r.spec.changedFile)
          runs[i] = { ...r, spec: { ...r.spec, changed: loadChangedList(r.spec.changedFile) } };
      }
      for (const r of runs) {
        const cts = await CtsWriter.create(join(deps.stateDir, `${r.spec.id}.cts`), {
          rp,
          blockSize: r.blockSize,
          deviceSize: r.size,
        });
        ctsWriters.push(cts);
        const { scanned, ...d } = await scanDevice(deps, input, keys, r, packer, dedup, dedupOk, own, cts);
        scannedBytes += scanned;
        changedBytes += d.changedBlocks * r.blockSize;
        devices.push(r.full ? { ...d, full: true } : d);
      }
    } finally {
      if (input.postSnapshot) await deps.runHook(input.postSnapshot).catch((e) => (hookError = e));
    }
    // the block maps go up while the last segments finish; the manifest waits for both
    const maps = writeBlockMaps(deps.store, deps.safe, rp, run, devices);
    maps.catch(() => undefined);
    await packer.close();
    finalDevices = await maps;
  } catch (e) {
    await packer.abort();
    for (const w of ctsWriters) await w.discard();
    throw e;
  } finally {
    for (const r of runs) await r.old?.close();
  }

  // the manifest, strictly after every segment and block map is durable, while the lock holds
  let manifest: Manifest;
  try {
    manifest = {
      format: 'cdp-manifest',
      version: FORMAT_VERSION,
      safe: deps.safe,
      rp,
      parent,
      createdAt: (deps.now?.() ?? new Date()).toISOString(),
      view,
      run,
      agent: deps.agent,
      encrypted: keys !== undefined,
      devices: finalDevices,
      segments: uncommitted.referencedBy(devices.flatMap((d) => d.extents)),
      stats: {
        scannedBytes,
        changedBytes,
        storedBytes: packer.durableBytes,
        durationMs: Date.now() - t0,
      },
    };
    await lock.check();
    if (!(await deps.store.putIfAbsent(manifestKey(deps.safe, rp), encodeManifest(manifest))))
      throw new ConflictError(`recovery point ${rp}`, { safe: deps.safe, rp });
  } catch (e) {
    for (const w of ctsWriters) await w.discard();
    throw e;
  }
  uncommitted.clear();
  for (const w of ctsWriters) await w.commit();
  if (hookError) {
    throw new CdpError(
      'E_POST_SNAPSHOT',
      `RP ${rp} committed, but the post-snapshot command failed: ${(hookError as Error).message}`,
      { rp },
    );
  }
  return { rp, parent, manifest, rebuiltState, notes };
}

/**
 * Writes each device's block map for RP `rp` under this run's own name (never over another run's
 * map); returns the devices as the manifest lists them.
 */
async function writeBlockMaps(
  store: ObjectStore,
  safe: string,
  rp: number,
  run: string,
  devices: readonly ScannedDevice[],
): Promise<ManifestDevice[]> {
  return Promise.all(
    devices.map(async ({ extents, ...d }) => {
      const key = blockMapKey(safe, rp, d.id, run);
      const body = encodeBlockMap({ blockSize: d.blockSize, deviceSize: d.sizeBytes, extents });
      if (!(await store.putIfAbsent(key, body))) throw new ConflictError(`block map ${key}`, { rp, key });
      const sha256 = createHash('sha256').update(body).digest('hex');
      return { ...d, blockMap: { key, bytes: body.length, sha256, extents: extents.length } };
    }),
  );
}

/** Marks the blocks of `heal` within [first, first + count) as changed in `old` (their frames are damaged). */
function forceHealed(
  heal: readonly (readonly [number, number])[],
  first: number,
  count: number,
  old: ArrayBuffer,
): void {
  const view = Buffer.from(old);
  for (const [f, n] of heal) {
    const a = Math.max(f, first);
    const b = Math.min(f + n, first + count);
    for (let x = a; x < b; x++) FORCE.copy(view, (x - first) * 8);
  }
}

async function scanDevice(
  deps: BackupDeps,
  input: BackupInput,
  keys: SafeKeys | undefined,
  run: DeviceRun,
  packer: SegmentPacker,
  dedup: DedupIndex,
  dedupOk: (loc: { segment: string; frame: number }) => Promise<boolean>,
  own: Set<string>,
  cts: CtsWriter,
): Promise<ScannedDevice & { scanned: number }> {
  const bs = run.blockSize;
  const chunk = Math.max(CHUNK, bs);
  // every chunk buffer can hold a chunk's frames: workers return the frames in another one (a swap)
  const bufferBytes = framesRoom(chunk, chunk / bs, bs);
  const settings: ScanSettings = {
    blockSize: bs,
    bufferBytes,
    idKey: keys?.idKey,
    dataKey: keys?.dataKey,
    zstdLevel: 1,
  };
  const pool = new WorkerPool<ScanRequest, ScanResult>(
    './scan-worker',
    import.meta.url,
    settings,
    input.workers ?? undefined,
  );
  const h = await openDevice(run.spec.path);
  const extents: Extent[] = [];
  const stats = { changedBlocks: 0, zeroBlocks: 0, dedupBlocks: 0, storedBytes: 0 };
  const chunks = Math.ceil(run.size / chunk);
  // chunks read ahead and in flight, each in its own chunk buffer: four per worker keep the
  // workers busy (4 MiB per worker with 1 MiB chunks)
  const window = pool.size * 4;
  const free: ArrayBuffer[] = [];
  let scanned = 0;
  try {
    const submit = async (c: number) => {
      const buf = free.pop() ?? new ArrayBuffer(bufferBytes);
      const length = await readFully(
        h,
        new Uint8Array(buf),
        Math.min(chunk, run.size - c * chunk),
        c * chunk,
      );
      if (length !== Math.min(chunk, run.size - c * chunk))
        throw new DeviceError(run.spec.path, `shrank while being read (short read at ${c * chunk})`);
      const firstBlock = (c * chunk) / bs;
      const blocks = Math.ceil(length / bs);
      const old = run.old ? await run.old.read(firstBlock, blocks) : null;
      if (old) forceHealed(run.heal, firstBlock, blocks, old);
      return {
        firstBlock,
        length,
        result: pool.submit({ id: c, buf, length, old }, old ? [buf, old] : [buf]),
      };
    };
    const inflight: ReturnType<typeof submit>[] = [];
    const handle = async (p: ReturnType<typeof submit>) => {
      const { firstBlock, length, result } = await p;
      const r = await result;
      await cts.write(firstBlock, new Uint8Array(r.state));
      for (const ch of r.changed) {
        const block = firstBlock + ch.index;
        if (ch.zero) {
          if (!run.old) continue; // a full records no zero blocks: unrecorded blocks are zero
          stats.changedBlocks++;
          stats.zeroBlocks++;
          pushBlock(extents, block, 'zero');
          continue;
        }
        stats.changedBlocks++;
        const identity = new Uint8Array(r.identities, ch.identityOffset, 32);
        let loc = dedup.get(identity);
        if (loc && !(await dedupOk(loc))) loc = undefined; // never build on a bad segment or frame
        if (loc) stats.dedupBlocks++;
        else {
          const plain = Math.min(bs, length - ch.index * bs);
          // the packer copies the frame before it resolves
          loc = await packer.add(new Uint8Array(r.frames, ch.frameOffset, ch.frameLength), identity, plain);
          own.add(loc.segment);
          stats.storedBytes += ch.frameLength;
          dedup.addPending(identity, loc);
        }
        pushBlock(extents, block, loc);
      }
      free.push(r.frames);
      scanned += length;
      deps.onProgress?.({ device: run.spec.id, scanned, total: run.size });
    };
    // With a changed list (and the parent's change tracking), read only the chunks it touches;
    // the others keep the parent's state.
    const list =
      run.spec.changed && run.old
        ? chunksTouched(
            [...run.spec.changed, ...run.heal.map(([f, n]) => [f * bs, n * bs] as const)],
            chunk,
            run.size,
          )
        : undefined;
    const order = list ?? Array.from({ length: chunks }, (_, c) => c);
    for (const c of order) {
      inflight.push(submit(c));
      inflight[inflight.length - 1]!.catch(() => undefined);
      if (inflight.length >= window) await handle(inflight.shift()!);
    }
    while (inflight.length > 0) await handle(inflight.shift()!);
    if (list && run.old) {
      const blocksPerChunk = chunk / bs;
      const totalBlocks = Math.ceil(run.size / bs);
      // copy the parent's state of the untouched stretches, in batches of up to 64 Ki blocks
      const copy = async (fromBlock: number, toBlock: number): Promise<void> => {
        for (let b = fromBlock; b < toBlock; b += 65536) {
          const n = Math.min(65536, toBlock - b);
          await cts.write(b, new Uint8Array(await run.old!.read(b, n)));
        }
      };
      let next = 0;
      for (const c of list) {
        await copy(next * blocksPerChunk, Math.min(c * blocksPerChunk, totalBlocks));
        next = c + 1;
      }
      await copy(Math.min(next * blocksPerChunk, totalBlocks), totalBlocks);
    }
  } finally {
    await h.close();
    await pool.close();
  }
  return {
    id: run.spec.id,
    source: run.spec.path,
    sizeBytes: run.size,
    blockSize: bs,
    ...stats,
    extents,
    scanned,
  };
}
