/**
 * Use case: take one recovery point of a group of devices into a safe (docs/FORMAT.md "Write
 * ordering"): segments, then block maps, then the manifest (atomic create), then local state.
 */
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { CdpError, ConflictError } from '#core/errors.ts';
import { type Extent, encodeBlockMap, pushBlock } from '#core/format/block-map.ts';
import {
  DEFAULT_BLOCK_SIZE,
  DEFAULT_SEGMENT_BYTES,
  FORMAT_VERSION,
  isValidBlockSize,
} from '#core/format/constants.ts';
import { deriveKeys, keyCheckMatches, type SafeKeys } from '#core/format/crypto.ts';
import { framesRoom } from '#core/format/frame.ts';
import {
  encodeManifest,
  type Manifest,
  type ManifestDevice,
  type SafeConfig,
} from '#core/format/manifest.ts';
import { blockMapKey, manifestKey, safeConfigKey } from '#core/keys.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import { SafeReader } from '#core/safe-reader.ts';
import { CtsReader, CtsWriter } from '../state/change-tracking.ts';
import { DedupIndex } from '../state/dedup-index.ts';
import { listSegments, rebuildChangeTracking, rebuildDedupIndex } from '../state/rebuild.ts';
import { UncommittedSegments } from '../state/uncommitted.ts';
import { WorkerPool } from '../worker-pool.ts';
import { chunksTouched, loadChangedList } from './changed-list.ts';
import { DeviceError, type DeviceSpec, deviceSize, openDevice, readFully } from './device.ts';
import type { RateLimiter } from './rate-limiter.ts';
import type { ScanRequest, ScanResult, ScanSettings } from './scan-worker.ts';
import { SegmentPacker } from './segment-packer.ts';

export class SafeAccessError extends CdpError {
  constructor(safe: string, reason: string, hint?: string) {
    super('E_SAFE_ACCESS', `safe ${safe}: ${reason}`, { safe }, hint);
  }
}

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
}

/**
 * Bytes read and scanned as one unit. 1 MiB: half the memory of 2 MiB chunks for the same
 * read-ahead, and the same CPU time (2 GiB full and incremental, 64 GiB sparse).
 */
const CHUNK = 1024 * 1024;

type ScannedDevice = Omit<ManifestDevice, 'blockMap'> & { extents: Extent[] };

async function openSafe(
  deps: BackupDeps,
  input: BackupInput,
): Promise<{ config: SafeConfig; keys?: SafeKeys }> {
  const reader = new SafeReader(deps.store, deps.safe);
  let config = await reader.config();
  if (!config) {
    const salt = randomBytes(16);
    const keys = input.key ? deriveKeys(input.key, salt) : undefined;
    const fresh: SafeConfig = {
      format: 'cdp-safe',
      version: FORMAT_VERSION,
      safe: deps.safe,
      createdAt: (deps.now?.() ?? new Date()).toISOString(),
      owner: deps.agent.id,
      encryption: keys
        ? { alg: 'aes-256-gcm+hmac-sha256', salt: salt.toString('base64'), keyCheck: keys.keyCheck }
        : null,
    };
    await deps.store.putIfAbsent(
      safeConfigKey(deps.safe),
      Buffer.from(`${JSON.stringify(fresh, null, 1)}\n`),
    );
    config = (await reader.config())!;
  }
  if (config.safe !== deps.safe)
    throw new SafeAccessError(deps.safe, `safe.json names safe '${config.safe}'`);
  if (config.owner !== deps.agent.id && !input.takeOver) {
    throw new SafeAccessError(
      deps.safe,
      `belongs to agent ${config.owner}, this agent is ${deps.agent.id}`,
      'pick another safe, or pass --take-over if this machine replaced that agent',
    );
  }
  if (!config.encryption) {
    if (input.key)
      throw new SafeAccessError(
        deps.safe,
        'is not encrypted, but a key was given',
        'drop --encrypt-key-file',
      );
    return { config };
  }
  if (!input.key)
    throw new SafeAccessError(deps.safe, 'is encrypted', 'pass --encrypt-key-file with its key');
  const keys = deriveKeys(input.key, Buffer.from(config.encryption.salt, 'base64'));
  if (!keyCheckMatches(keys, config.encryption.keyCheck))
    throw new SafeAccessError(deps.safe, 'wrong encryption key');
  return { config, keys };
}

interface DeviceRun {
  readonly spec: DeviceSpec;
  readonly size: number;
  readonly blockSize: number;
  /** Change-tracking state of the parent RP; undefined for a full backup of this device. */
  readonly old?: CtsReader;
}

export async function runBackup(deps: BackupDeps, input: BackupInput): Promise<BackupResult> {
  const t0 = Date.now();
  const log = deps.log ?? (() => undefined);
  // the safe's segments (for the dedup index) are listed while the safe is opened and read
  const listing = listSegments(new SafeReader(deps.store, deps.safe));
  listing.catch(() => undefined);
  const { keys } = await openSafe(deps, input);
  const reader = new SafeReader(deps.store, deps.safe, keys);
  const rps = await reader.listRps();
  const parent = rps.length > 0 ? rps[rps.length - 1]! : null;
  const rp = (parent ?? 0) + 1;
  const parentManifest = parent ? await reader.manifest(parent) : undefined;
  const rebuiltState: string[] = [];

  // dedup index: load, rebuild if missing, drop segments the safe no longer has
  const dedup = new DedupIndex(join(deps.stateDir, 'dedup.bin'));
  const segments = await listing;
  if (!dedup.load()) {
    await rebuildDedupIndex(reader, dedup, segments);
    if (segments.size > 0) rebuiltState.push('dedup index');
  } else dedup.prune(segments);

  const runs: DeviceRun[] = [];
  const ids = new Set<string>();
  for (const spec of input.devices) {
    if (ids.has(spec.id))
      throw new DeviceError(spec.path, `id '${spec.id}' is used twice`, 'name them: --device PATH=ID');
    ids.add(spec.id);
    const size = await deviceSize(spec.path);
    const prev = parentManifest?.devices.find((d) => d.id === spec.id);
    if (prev && prev.sizeBytes !== size) {
      throw new DeviceError(
        spec.path,
        `size changed from ${prev.sizeBytes} to ${size} bytes since RP ${parent}`,
        'back it up into a new safe',
      );
    }
    const blockSize = prev?.blockSize ?? input.blockSize ?? DEFAULT_BLOCK_SIZE;
    if (!isValidBlockSize(blockSize))
      throw new DeviceError(spec.path, `block size ${blockSize} is not a power of two from 4 KiB to 512 KiB`);
    if (prev && input.blockSize && input.blockSize !== prev.blockSize)
      log(`device ${spec.id}: keeps block size ${prev.blockSize} (set at its first backup)`);
    let old: CtsReader | undefined;
    if (prev) {
      const ctsPath = join(deps.stateDir, `${spec.id}.cts`);
      old = await CtsReader.open(ctsPath);
      const h = old?.header;
      if (!h || h.rp !== parent || h.blockSize !== blockSize || h.deviceSize !== size) {
        await old?.close();
        log(`device ${spec.id}: rebuilding change-tracking state from RP ${parent}`);
        await rebuildChangeTracking(reader, parent!, spec.id, ctsPath);
        rebuiltState.push(`change tracking of ${spec.id}`);
        old = await CtsReader.open(ctsPath);
      }
    }
    runs.push({ spec, size, blockSize, old });
  }

  const uncommitted = new UncommittedSegments(join(deps.stateDir, 'uncommitted.json'), segments);
  const packer = new SegmentPacker(deps.store, deps.safe, {
    targetBytes: input.segmentBytes ?? DEFAULT_SEGMENT_BYTES,
    encrypted: keys !== undefined,
    limiter: input.limiter,
    onDurable: (s) => {
      dedup.addSegment(s.id, s.identities);
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
      for (const [i, run] of runs.entries()) {
        if (run.spec.changedFile)
          runs[i] = { ...run, spec: { ...run.spec, changed: loadChangedList(run.spec.changedFile) } };
      }
      for (const run of runs) {
        const cts = await CtsWriter.create(join(deps.stateDir, `${run.spec.id}.cts`), {
          rp,
          blockSize: run.blockSize,
          deviceSize: run.size,
        });
        ctsWriters.push(cts);
        const { scanned, ...d } = await scanDevice(deps, input, keys, run, packer, dedup, cts);
        scannedBytes += scanned;
        changedBytes += d.changedBlocks * run.blockSize;
        devices.push(d);
      }
    } finally {
      if (input.postSnapshot) await deps.runHook(input.postSnapshot).catch((e) => (hookError = e));
    }
    // the block maps go up while the last segments finish; the manifest waits for both
    const maps = writeBlockMaps(deps.store, deps.safe, rp, devices);
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

  // the manifest, strictly after every segment and block map is durable
  let manifest: Manifest;
  try {
    manifest = {
      format: 'cdp-manifest',
      version: FORMAT_VERSION,
      safe: deps.safe,
      rp,
      parent,
      createdAt: (deps.now?.() ?? new Date()).toISOString(),
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
  return { rp, parent, manifest, rebuiltState };
}

/** Writes each device's block map for RP `rp`; returns the devices as the manifest lists them. */
async function writeBlockMaps(
  store: ObjectStore,
  safe: string,
  rp: number,
  devices: readonly ScannedDevice[],
): Promise<ManifestDevice[]> {
  return Promise.all(
    devices.map(async ({ extents, ...d }) => {
      const key = blockMapKey(safe, rp, d.id);
      const body = encodeBlockMap({ blockSize: d.blockSize, deviceSize: d.sizeBytes, extents });
      await store.put(key, body);
      const sha256 = createHash('sha256').update(body).digest('hex');
      return { ...d, blockMap: { key, bytes: body.length, sha256, extents: extents.length } };
    }),
  );
}

async function scanDevice(
  deps: BackupDeps,
  input: BackupInput,
  keys: SafeKeys | undefined,
  run: DeviceRun,
  packer: SegmentPacker,
  dedup: DedupIndex,
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
      const old = run.old ? await run.old.read(firstBlock, Math.ceil(length / bs)) : null;
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
        if (loc) stats.dedupBlocks++;
        else {
          const plain = Math.min(bs, length - ch.index * bs);
          // the packer copies the frame before it resolves
          loc = await packer.add(new Uint8Array(r.frames, ch.frameOffset, ch.frameLength), identity, plain);
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
    const list = run.spec.changed && run.old ? chunksTouched(run.spec.changed, chunk, run.size) : undefined;
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
