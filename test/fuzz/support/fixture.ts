/**
 * The pristine safes the fuzzer mutates: one unencrypted and one encrypted, both safe id `fz`,
 * written by the real agent use cases with the same deterministic device images: RPs 1-3 of two
 * devices, a compaction (policy `--last 2`: RP 1 expires, its garbage stays pending for the default
 * grace period), RP 4 on top of the generation, a live read lock and a damage record. Each object
 * gets a role name (`seg#3`, `map#1`, …) that does not depend on the random ids, so a seed picks the
 * same object in every build of the fixture.
 */
import { createHash } from 'node:crypto';
import {
  accessSync,
  constants,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { FsObjectStore } from '#adapters/fs-store.ts';
import type { DamageRecord } from '#core/format/damage.ts';
import { encodeJson } from '#core/format/manifest.ts';
import { damageKey, parseKey } from '#core/keys.ts';
import { acquireLock } from '#core/locks.ts';
import { backupCommand } from '../../../agent/commands/backup.ts';
import { compactCommand } from '../../../agent/commands/compact.ts';
import { policyCommand } from '../../../agent/commands/policy.ts';
import { safeStateDir } from '../../../agent/state/agent-state.ts';
import { loud } from './quiet.ts';

export const SAFE = 'fz';
export const BS = 4096;
export const DEVICES = ['d', 'e'] as const;
export type DeviceId = (typeof DEVICES)[number];
/** Device d: 24 blocks and a short last one; device e: 8 blocks. */
const SIZES: Record<DeviceId, number> = { d: 24 * BS + 1000, e: 8 * BS };
export const KEY = Buffer.alloc(32, 0x5a);

export type Variant = 'plain' | 'encrypted';
export const VARIANTS: readonly Variant[] = ['plain', 'encrypted'];

/** What kind of object a file of the safe is, for picking mutation targets. */
export type ObjKind =
  | 'safe'
  | 'policy'
  | 'manifest'
  | 'map'
  | 'segment'
  | 'generation'
  | 'journal'
  | 'work'
  | 'gen-map'
  | 'lock'
  | 'damage';

export const JSON_KINDS: ReadonlySet<ObjKind> = new Set([
  'safe',
  'policy',
  'manifest',
  'generation',
  'journal',
  'work',
  'lock',
  'damage',
]);

export interface SafeObject {
  /** Path relative to the safe's directory (= the key after `safes/fz/`). */
  readonly rel: string;
  readonly kind: ObjKind;
  /** Stable name: kind and position in a canonical order (`seg#3`). */
  readonly role: string;
}

export type Images = Record<DeviceId, Buffer>;

export interface PristineSafe {
  readonly variant: Variant;
  /** The safe's directory (its last component is the safe id). */
  readonly dir: string;
  /** The agent state directory the safe was written with (agent.json, safes/<hash>/…). */
  readonly stateDir: string;
  readonly keyFile: string | undefined;
  readonly objects: readonly SafeObject[];
  readonly byKind: ReadonlyMap<ObjKind, readonly SafeObject[]>;
  /** The RP whose upload each manifest, block map and segment was (from the pristine manifests). */
  readonly uploadOf: ReadonlyMap<string, number>;
  /** Every file of the safe and of its state folder, read once: copies are written from memory. */
  readonly files: ReadonlyMap<string, Buffer>;
  readonly stateFiles: ReadonlyMap<string, Buffer>;
}

export interface Fixture {
  readonly root: string;
  readonly safes: Record<Variant, PristineSafe>;
  /** Device images at RP 1..4 (index 0 unused). */
  readonly images: readonly Images[];
  /** Device files holding the images of the next backup (RP 4 with a few more changes). */
  readonly nextDevices: Record<DeviceId, string>;
  readonly next: Images;
  readonly rps: readonly number[];
}

/** Deterministic bytes: SHA-256 in counter mode over `label`. */
export function seeded(label: string, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let o = 0, n = 0; o < length; o += 32, n++) {
    createHash('sha256')
      .update(`${label}:${n}`)
      .digest()
      .copy(out, o, 0, Math.min(32, length - o));
  }
  return out;
}

/** Random-looking blocks (stored raw) and text blocks (stored zstd-compressed). */
function block(label: string, text: boolean): Buffer {
  return text ? Buffer.alloc(BS, `block ${label}: the quick brown fox `) : seeded(label, BS);
}

function setBlock(img: Buffer, n: number, data: Buffer | 'zero'): void {
  const len = Math.min(BS, img.length - n * BS);
  if (data === 'zero') img.fill(0, n * BS, n * BS + len);
  else data.copy(img, n * BS, 0, len);
}

function histories(): Images[] {
  const d = Buffer.alloc(SIZES.d);
  const e = Buffer.alloc(SIZES.e);
  for (let n = 0; n < 25; n++) if (n < 18 || n > 21) setBlock(d, n, block(`d1-${n}`, n % 3 === 0));
  for (let n = 0; n < 8; n++) setBlock(e, n, block(`e1-${n}`, n % 2 === 0));
  const rp1 = { d: Buffer.from(d), e: Buffer.from(e) };
  // RP 2: a whole segment's worth and most of another rewritten, a block zeroed
  for (const n of [0, 1, 2, 3, 5, 6, 7]) setBlock(d, n, block(`d2-${n}`, n === 6));
  setBlock(e, 2, 'zero');
  const rp2 = { d: Buffer.from(d), e: Buffer.from(e) };
  // RP 3: a block copied from another (deduplicated), two new ones
  d.copy(d, 10 * BS, 0, BS);
  for (const n of [12, 13]) setBlock(d, n, block(`d3-${n}`, n === 12));
  setBlock(e, 7, block('e3-7', false));
  const rp3 = { d: Buffer.from(d), e: Buffer.from(e) };
  // RP 4, after the compaction: the short last block and two blocks of e
  setBlock(d, 24, block('d4-24', false));
  for (const n of [0, 1]) setBlock(e, n, block(`e4-${n}`, n === 0));
  const rp4 = { d: Buffer.from(d), e: Buffer.from(e) };
  return [rp1, rp2, rp3, rp4];
}

function nextImages(last: Images): Images {
  const d = Buffer.from(last.d);
  const e = Buffer.from(last.e);
  setBlock(d, 3, block('d5-3', false));
  setBlock(d, 19, block('d5-19', true));
  setBlock(e, 5, 'zero');
  return { d, e };
}

/** Every file below `dir`, relative, sorted. */
export function walk(dir: string): string[] {
  const out: string[] = [];
  const go = (d: string): void => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) go(p);
      else out.push(relative(dir, p));
    }
  };
  go(dir);
  return out.sort();
}

function kindOf(rel: string): { kind: ObjKind; order: string } | undefined {
  let k: ReturnType<typeof parseKey>;
  try {
    k = parseKey(`safes/${SAFE}/${rel}`);
  } catch {
    return undefined;
  }
  switch (k.kind) {
    case 'safe-config':
      return { kind: 'safe', order: '' };
    case 'policy':
      return { kind: 'policy', order: '' };
    case 'manifest':
      return { kind: 'manifest', order: String(k.rp).padStart(10, '0') };
    case 'block-map':
      return { kind: 'map', order: `${String(k.rp).padStart(10, '0')}/${k.device}` };
    case 'segment':
      return { kind: 'segment', order: '' };
    case 'generation':
      return { kind: 'generation', order: String(k.generation).padStart(10, '0') };
    case 'journal':
      return { kind: 'journal', order: String(k.generation).padStart(10, '0') };
    case 'compaction-work':
      return { kind: 'work', order: `${String(k.generation).padStart(10, '0')}/${k.name}` };
    case 'generation-map':
      return {
        kind: 'gen-map',
        order: `${String(k.generation).padStart(10, '0')}/${String(k.rp).padStart(10, '0')}/${k.device}/${String(k.first ?? 0).padStart(15, '0')}`,
      };
    case 'lock':
      return { kind: 'lock', order: '' };
    case 'damage':
      return { kind: 'damage', order: '' };
    default:
      return undefined;
  }
}

/**
 * Segments in the order the safe's history made them (manifests oldest first, each in its own
 * order, then the generation's written segments): independent of their random ids.
 */
function segmentOrder(dir: string, rels: readonly string[]): Map<string, number> {
  const order = new Map<string, number>();
  const note = (key: string): void => {
    const rel = key.slice(`safes/${SAFE}/`.length);
    if (!order.has(rel)) order.set(rel, order.size);
  };
  for (const rel of rels.filter((r) => r.startsWith('rp/'))) {
    for (const s of JSON.parse(readFileSync(join(dir, rel), 'utf8')).segments) note(s.key);
  }
  for (const rel of rels.filter((r) => /^gen\/\d+\.json$/.test(r))) {
    for (const s of JSON.parse(readFileSync(join(dir, rel), 'utf8')).written) note(s.key);
  }
  return order;
}

export function objectsOf(dir: string): SafeObject[] {
  const rels = walk(dir);
  const segs = segmentOrder(dir, rels);
  const typed = rels.flatMap((rel) => {
    const k = kindOf(rel);
    if (!k) return [];
    const order = k.kind === 'segment' ? String(segs.get(rel) ?? 1e6).padStart(8, '0') + rel : k.order;
    return [{ rel, kind: k.kind, order }];
  });
  typed.sort((a, b) => (a.kind === b.kind ? a.order.localeCompare(b.order) : a.kind.localeCompare(b.kind)));
  const counts = new Map<ObjKind, number>();
  return typed.map(({ rel, kind }) => {
    const i = counts.get(kind) ?? 0;
    counts.set(kind, i + 1);
    return { rel, kind, role: `${kind}#${i}` };
  });
}

async function buildSafe(root: string, variant: Variant, images: readonly Images[]): Promise<PristineSafe> {
  const base = join(root, variant);
  const dir = join(base, SAFE);
  const stateDir = join(base, 'state');
  mkdirSync(base, { recursive: true });
  let keyFile: string | undefined;
  if (variant === 'encrypted') {
    keyFile = join(root, 'key.hex');
    writeFileSync(keyFile, KEY.toString('hex'));
  }
  const devPaths = Object.fromEntries(DEVICES.map((id) => [id, join(base, `${id}.img`)])) as Record<
    DeviceId,
    string
  >;
  const backup = async (img: Images): Promise<void> => {
    for (const id of DEVICES) writeFileSync(devPaths[id], img[id]);
    const code = await loud(`fixture backup (${variant})`, () =>
      backupCommand({
        safe: dir,
        device: DEVICES.map((id) => `${devPaths[id]}=${id}`),
        blockSize: '4k',
        segmentSize: '16k',
        workers: '1',
        stateDir,
        json: true,
        encryptKeyFile: keyFile,
      }),
    );
    if (code !== 0) throw new Error(`fixture backup exited ${code}`);
  };
  for (const img of images.slice(0, 3)) await backup(img);
  await loud('fixture policy', () => policyCommand({ safe: dir, last: '2', json: true }));
  await loud('fixture compact', () => compactCommand({ safe: dir, stateDir, json: true }));
  await backup(images[3]!);
  const store = new FsObjectStore(dir, SAFE);
  // a live read lock of this process (a restore that is still running), kept after this returns
  const lock = await acquireLock(store, SAFE, { kind: 'read', purpose: 'restore', owner: 'fuzz fixture' });
  await lock.detach();
  // a damage record naming the first frame of RP 4's first segment
  const m4 = JSON.parse(readFileSync(join(dir, 'rp', '0000000004.json'), 'utf8'));
  const seg = m4.segments[0].id as string;
  const record: DamageRecord = {
    format: 'cdp-damage',
    version: 2,
    segment: seg,
    frames: [{ first: 0, count: 1, reason: 'fuzz fixture: frame checksum mismatch' }],
    foundAt: new Date().toISOString(),
    foundBy: 'cdp-agent verify on fuzz',
    rp: 4,
    device: 'd',
  };
  await store.putIfAbsent(damageKey(SAFE, seg, '00000000000000f0'), encodeJson(record));
  const objects = objectsOf(dir);
  const byKind = new Map<ObjKind, SafeObject[]>();
  for (const o of objects) byKind.set(o.kind, [...(byKind.get(o.kind) ?? []), o]);
  const files = new Map(walk(dir).map((rel) => [rel, readFileSync(join(dir, rel))]));
  const safeState = safeStateDir(stateDir, dir);
  const stateFiles = new Map(walk(safeState).map((rel) => [rel, readFileSync(join(safeState, rel))]));
  const uploadOf = new Map<string, number>();
  for (const rel of files.keys()) {
    const m = /^rp\/(\d{10})\.json$/.exec(rel);
    if (!m) continue;
    const rp = Number(m[1]);
    const doc = JSON.parse(files.get(rel)!.toString('utf8'));
    uploadOf.set(rel, rp);
    for (const x of [...doc.devices.map((d: { blockMap: { key: string } }) => d.blockMap), ...doc.segments])
      uploadOf.set((x.key as string).slice(`safes/${SAFE}/`.length), rp);
  }
  return { variant, dir, stateDir, keyFile, objects, byKind, files, stateFiles, uploadOf };
}

/**
 * Where the fixture and every mutated copy live: FUZZ_TMPDIR, else a memory filesystem where there
 * is one (what is fuzzed is how input is judged, not the disk: an fsync there costs nothing, where
 * this machine's disk takes 5 ms), else the system's temporary directory.
 */
export function scratchRoot(): string {
  if (process.env.FUZZ_TMPDIR) return process.env.FUZZ_TMPDIR;
  try {
    accessSync('/dev/shm', constants.W_OK);
    return '/dev/shm';
  } catch {
    return tmpdir();
  }
}

export async function buildFixture(): Promise<Fixture> {
  const root = mkdtempSync(join(scratchRoot(), 'cdp-fuzz-'));
  const images = histories();
  const safes = {} as Record<Variant, PristineSafe>;
  for (const v of VARIANTS) safes[v] = await buildSafe(root, v, images);
  const next = nextImages(images[3]!);
  const nextDevices = {} as Record<DeviceId, string>;
  for (const id of DEVICES) {
    nextDevices[id] = join(root, `next-${id}.img`);
    writeFileSync(nextDevices[id], next[id]);
  }
  return { root, safes, images: [images[0]!, ...images], next, nextDevices, rps: [1, 2, 3, 4] };
}

/**
 * A private copy of a pristine safe in `caseDir/fz`, and of its agent state re-keyed to the
 * copy's location (the agent keys a safe's state by where the safe is), unless `state` is 'lost'.
 */
export function copySafe(
  p: PristineSafe,
  caseDir: string,
  state: 'kept' | 'lost' = 'kept',
): { dir: string; stateDir: string } {
  const dir = join(caseDir, SAFE);
  writeTree(dir, p.files);
  const stateDir = join(caseDir, 'state');
  mkdirSync(stateDir, { recursive: true });
  cpSync(join(p.stateDir, 'agent.json'), join(stateDir, 'agent.json'));
  // safeStateDir writes the copy's location.txt; the files copied over it keep the rest
  if (state === 'kept') writeTree(safeStateDir(stateDir, dir), p.stateFiles, ['location.txt']);
  return { dir, stateDir };
}

function writeTree(dir: string, files: ReadonlyMap<string, Buffer>, skip: readonly string[] = []): void {
  const made = new Set<string>();
  for (const [rel, body] of files) {
    if (skip.includes(rel)) continue;
    const parent = dirname(join(dir, rel));
    if (!made.has(parent)) {
      mkdirSync(parent, { recursive: true });
      made.add(parent);
    }
    writeFileSync(join(dir, rel), body);
  }
}
