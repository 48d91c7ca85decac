/**
 * Mutations of a copied safe, as fast-check arbitraries: byte flips, truncation, garbage appended,
 * zeroed ranges, binary header/trailer/frame fields set to boundary and huge values, JSON fields
 * given other values and types, objects swapped with another of their kind, deleted, or replaced by
 * the same object of the other fixture safe, and "forged" edits of block maps and segment indexes
 * whose checksums are brought up to date, so the decoders behind the checksums get the input too.
 *
 * Targets are picked by kind and role (fixture.ts), never by random id, so a seed replays.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import fc from 'fast-check';
import { JSON_KINDS, type ObjKind, type PristineSafe, SAFE, type SafeObject } from './fixture.ts';
import { getAt, type Json, jsonValue, paths, setAt } from './json-mutation.ts';

export interface Pick {
  readonly kind: ObjKind;
  readonly n: number;
}

/** A field value: a bigint is set as it is, a number is added to the current value (a small delta). */
type U = number | bigint;

export type Mutation =
  | { readonly op: 'flip'; readonly t: Pick; readonly at: number; readonly xor: number }
  | { readonly op: 'truncate'; readonly t: Pick; readonly keep: number }
  | { readonly op: 'extend'; readonly t: Pick; readonly garbage: readonly number[] }
  | { readonly op: 'zero'; readonly t: Pick; readonly at: number; readonly length: number }
  | { readonly op: 'field'; readonly t: Pick; readonly field: string; readonly value: U; readonly i: number }
  | { readonly op: 'json'; readonly t: Pick; readonly pick: number; readonly value: Json | undefined }
  | { readonly op: 'swap'; readonly kind: ObjKind; readonly a: number; readonly b: number }
  | { readonly op: 'delete'; readonly t: Pick }
  | { readonly op: 'foreign'; readonly t: Pick }
  | {
      readonly op: 'set';
      readonly t: Pick;
      readonly path: readonly (string | number)[];
      readonly value: Json | undefined;
    }
  | {
      readonly op: 'forge-map';
      readonly t: Pick;
      readonly field: string;
      readonly value: U;
      readonly i: number;
    }
  | { readonly op: 'forge-size'; readonly t: Pick; readonly size: bigint }
  | {
      readonly op: 'forge-index';
      readonly t: Pick;
      readonly field: string;
      readonly value: U;
      readonly i: number;
    };

/** What a mutation did to the copy, for the oracles. */
export interface Applied {
  /** One line per mutation: op, role and path, what changed. */
  readonly notes: string[];
  /** Segments (ids) whose frame bytes, or whose index's view of them, were changed: a CorruptBlockError there is the expected consequence. */
  readonly framesTouched: Set<string>;
  /**
   * Consistent rewrites of what the format does not authenticate (FORMAT.md §10: manifests and
   * generations carry no checksum, maps and indexes only unkeyed ones): a safe that describes other
   * data and passes every check. Named, so the data reading back different can be told apart.
   */
  readonly rewrites: Set<string>;
  /** Paths whose bytes differ from the pristine safe (or that were deleted). */
  readonly changed: Set<string>;
}

const ALL_KINDS: ObjKind[] = [
  'safe',
  'policy',
  'manifest',
  'map',
  'segment',
  'generation',
  'journal',
  'work',
  'gen-map',
  'lock',
  'damage',
];

/** A target: a kind of object, and which one of that kind (modulo how many the safe has). */
function pickOf(kinds: readonly ObjKind[]): fc.Arbitrary<Pick> {
  return fc.record({ kind: fc.constantFrom(...kinds), n: fc.nat(63) });
}

const delta: fc.Arbitrary<U> = fc.constantFrom(-3, -2, -1, 1, 2, 3);
const u16Values: fc.Arbitrary<U> = fc.oneof(
  fc.constantFrom<U>(0n, 1n, 2n, 3n, 0xffn, 0x7fffn, 0xffffn),
  fc.bigInt({ min: 0n, max: 0xffffn }),
  delta,
);
const u32Values: fc.Arbitrary<U> = fc.oneof(
  fc.constantFrom<U>(
    0n,
    1n,
    2n,
    15n,
    16n,
    4095n,
    4096n,
    4097n,
    65536n,
    2n ** 24n,
    2n ** 31n - 1n,
    2n ** 31n,
    2n ** 32n - 1n,
  ),
  fc.bigInt({ min: 0n, max: 2n ** 32n - 1n }),
  delta,
);
const u64Values: fc.Arbitrary<U> = fc.oneof(
  u32Values,
  fc.constantFrom<U>(2n ** 32n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n),
);

const SEGMENT_FIELDS = {
  'header.magic': 'bytes8',
  'header.version': 'u16',
  'header.flags': 'u16',
  'header.reserved': 'u32',
  'trailer.indexOffset': 'u64',
  'trailer.indexLength': 'u32',
  'trailer.frameCount': 'u32',
  'trailer.indexHash': 'bytes8',
  'trailer.magic': 'bytes8',
  'frame.payloadLength': 'u32',
  'frame.plainLength': 'u32',
  'frame.codec': 'u8',
  'frame.flags': 'u8',
  'frame.reserved': 'u16',
  'frame.identity': 'bytes8',
} as const;

const MAP_FIELDS = {
  'header.magic': 'bytes8',
  'header.version': 'u16',
  'header.flags': 'u16',
  'header.blockSize': 'u32',
  'header.deviceSize': 'u64',
  'header.extentCount': 'u32',
  'header.segmentCount': 'u32',
} as const;

/** Fields of one extent record in a map's (decompressed) body; `table` is a segment id of the table. */
const EXTENT_FIELDS = {
  'extent.first': 'u64',
  'extent.count': 'u32',
  'extent.kind': 'u8',
  'extent.reserved': 'u8',
  'extent.segment': 'u32',
  'extent.frame': 'u32',
  'table.segment': 'bytes8',
} as const;

const INDEX_FIELDS = {
  'entry.offset': 'u64',
  'entry.frameLength': 'u32',
  'entry.plainLength': 'u32',
  'entry.identity': 'bytes8',
  'binding.segment': 'bytes8',
  'binding.safe': 'bytes8',
  'index.drop-last': 'u8',
  'index.append': 'u8',
} as const;

type Width = 'u8' | 'u16' | 'u32' | 'u64' | 'bytes8';

function valueFor(width: Width): fc.Arbitrary<U> {
  switch (width) {
    case 'u8':
      return fc.oneof(fc.constantFrom<U>(0n, 1n, 2n, 0x80n, 0xffn), fc.bigInt({ min: 0n, max: 255n }), delta);
    case 'u16':
      return u16Values;
    case 'u32':
      return u32Values;
    case 'u64':
      return u64Values;
    case 'bytes8':
      return fc.oneof(fc.constantFrom<U>(0n, 1n), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }));
  }
}

function fieldOf<T extends Record<string, Width>>(
  fields: T,
): fc.Arbitrary<{ field: string; value: U; i: number }> {
  return fc
    .constantFrom(...(Object.keys(fields) as (keyof T & string)[]))
    .chain((field) =>
      fc.record({ field: fc.constant(field), value: valueFor(fields[field]!), i: fc.nat(1023) }),
    );
}

const LONG_AGO = '2000-01-01T00:00:00.000Z';

/**
 * Fields whose meaning the readers rely on, and values that are well-formed but wrong: a parent
 * that skips an RP, a device made full, garbage whose grace has passed or that names a live
 * object, a lock of a process that is gone, a policy that keeps nothing.
 */
function semantic(
  keys: readonly string[],
  ids: readonly string[],
  kinds?: readonly ObjKind[],
): fc.Arbitrary<Mutation> {
  const key = fc.constantFrom(...keys);
  const rows: [ObjKind, (string | number)[], fc.Arbitrary<Json | undefined>][] = [
    ['generation', ['garbage', '*', 'since'], fc.constantFrom<Json>(LONG_AGO, 'not a time', '')],
    ['generation', ['garbage', 0, 'since'], fc.constant<Json>(LONG_AGO)],
    ['generation', ['garbage', '+'], key.map((k) => ({ key: k, since: LONG_AGO, generation: 1 }))],
    ['generation', ['garbage', 0, 'key'], key],
    [
      'generation',
      ['garbage', '*', 'generation'],
      fc.constantFrom<Json | undefined>(undefined, 0, 2, 2 ** 53),
    ],
    ['generation', ['upTo'], fc.constantFrom<Json>(1, 2, 4, 5, 2 ** 32)],
    ['generation', ['generation'], fc.constantFrom<Json>(2, 0, 2 ** 53)],
    ['generation', ['previous'], fc.constantFrom<Json>(1, 2)],
    ['generation', ['rps', 0], fc.constant(undefined)],
    ['generation', ['rps', 1], fc.constant(undefined)],
    ['generation', ['rps', '*', 'parent'], fc.constantFrom<Json>(null, 1, 2, 3, 4)],
    ['generation', ['rps', 1, 'rp'], fc.constantFrom<Json>(1, 2, 4)],
    ['generation', ['rps', 0, 'devices', 0, 'full'], fc.constant<Json>(false)],
    ['generation', ['rps', 1, 'devices', '*', 'full'], fc.constant<Json>(true)],
    ['generation', ['rps', '*', 'devices', 0, 'id'], fc.constantFrom<Json>('e', 'x')],
    ['generation', ['rps', 0, 'devices', 0, 'blockMap', 'key'], key],
    ['generation', ['rps', '*', 'devices', '*', 'sizeBytes'], fc.constantFrom<Json>(0, 4096, 2 ** 53)],
    ['generation', ['rps', 0, 'devices', 0, 'blockMap'], fc.constant(undefined)],
    ['generation', ['segments', 0], fc.constant(undefined)],
    ['generation', ['segments', '+'], fc.constantFrom<Json>(...ids)],
    ['manifest', ['parent'], fc.constantFrom<Json>(null, 1, 2, 3, 4, 2 ** 53)],
    ['manifest', ['devices', '*', 'full'], fc.constantFrom<Json>(true, false)],
    ['manifest', ['view'], fc.constantFrom<Json | undefined>(undefined, 0, 5, 2 ** 32)],
    ['manifest', ['devices', 0, 'sizeBytes'], fc.constantFrom<Json>(0, 1, 4096, 2 ** 32, 2 ** 53)],
    ['manifest', ['devices', '*', 'blockSize'], fc.constantFrom<Json>(0, 4095, 8192, 65536, 2 ** 31)],
    ['manifest', ['devices', 0, 'id'], fc.constantFrom<Json>('e', 'x', 'D')],
    ['manifest', ['devices', 1], fc.constant(undefined)],
    ['manifest', ['devices'], fc.constantFrom<Json>([])],
    ['manifest', ['devices', 0, 'blockMap', 'key'], key],
    ['manifest', ['encrypted'], fc.boolean()],
    ['manifest', ['rp'], fc.constantFrom<Json>(1, 2, 3, 4, 5)],
    ['manifest', ['run'], fc.constantFrom<Json | undefined>(undefined, '0000000000000000')],
    ['manifest', ['segments', 0, 'frames'], fc.constantFrom<Json>(0, 2 ** 32, 2 ** 53)],
    ['manifest', ['segments', 0, 'bytes'], fc.constantFrom<Json>(0, 48, 2 ** 53)],
    ['manifest', ['segments', 0], fc.constant(undefined)],
    ['manifest', ['createdAt'], fc.constantFrom<Json>(LONG_AGO, '2999-01-01T00:00:00Z', 'yesterday')],
    ['lock', ['pid'], fc.constantFrom<Json>(1, 2 ** 22 + 7, 0)],
    ['lock', ['pidStart'], fc.constantFrom<Json>('', '1', 'x')],
    ['lock', ['bootId'], fc.constantFrom<Json>('another-boot', '')],
    ['lock', ['kind'], fc.constantFrom<Json>('write', 'compact', 'exclusive')],
    ['lock', ['view'], fc.constantFrom<Json>(0, 2, 2 ** 53)],
    ['lock', ['thread'], fc.constantFrom<Json | undefined>(undefined, 7)],
    ['policy', ['last'], fc.constantFrom<Json>(0, 1, 2 ** 32, -1)],
    ['policy', ['locked'], fc.constantFrom<Json>([1], [4], [2, 3, 4], [0], [2 ** 53])],
    ['policy', ['hourly'], fc.constantFrom<Json>(1, 1e9)],
    ['safe', ['owner'], fc.constantFrom<Json>('someone else', '')],
    [
      'safe',
      ['encryption'],
      fc.constantFrom<Json>(null, { alg: 'aes-256-gcm+hmac-sha256', salt: 'AAAA', keyCheck: 'AAAA' }),
    ],
    ['safe', ['encryption', 'salt'], fc.constantFrom<Json>('', 'AAAAAAAAAAAAAAAAAAAAAA==', '!!')],
    ['safe', ['encryption', 'keyCheck'], fc.constantFrom<Json>('', 'AAAA')],
    ['safe', ['safe'], fc.constantFrom<Json>('other', 'FZ')],
    ['journal', ['previous'], fc.constantFrom<Json | undefined>(null, undefined, 1)],
    ['journal', ['shards', 0, 'end'], fc.constantFrom<Json>(0, 2 ** 32, 2 ** 53)],
    ['journal', ['shards', '+'], fc.constant<Json>({ device: 'd', first: 0, end: 2 ** 40 })],
    ['journal', ['kept', '*', 'parent'], fc.constantFrom<Json>(null, 1, 4)],
    ['journal', ['expired'], fc.constantFrom<Json>([2, 3], [4], [])],
    ['journal', ['upTo'], fc.constantFrom<Json>(1, 4, 9)],
    ['journal', ['startedAt'], fc.constantFrom<Json>('2999-01-01T00:00:00.000Z', 'not a time')],
    [
      'work',
      ['outputs', 0, 'sources', 0, 'live', 0],
      fc.constantFrom<Json>([0, 2 ** 32], [2 ** 53, 1], [0, 0]),
    ],
    ['work', ['outputs', 0, 'key'], key],
    ['work', ['maps', '*', 'end'], fc.constantFrom<Json>(0, 2 ** 53)],
    ['work', ['maps', 0, 'part'], fc.constant(undefined)],
    ['work', ['segments'], fc.constantFrom<Json>({}, { x: [[0, 1]] })],
    ['damage', ['segment'], fc.constantFrom<Json>(...ids)],
    [
      'damage',
      ['frames', 0],
      fc.constantFrom<Json>(
        { first: 0, count: 2 ** 31, reason: 'x' },
        { first: 2 ** 53, count: 1, reason: 'x' },
      ),
    ],
    ['damage', ['frames'], fc.constantFrom<Json>([], [{ first: 0, count: 0, reason: '' }])],
  ];
  const some = kinds ? rows.filter(([kind]) => kinds.includes(kind)) : rows;
  return fc.record({ row: fc.nat(some.length - 1), n: fc.nat(63) }).chain(({ row, n }) => {
    const [kind, path, value] = some[row]!;
    return value.map((v) => ({ op: 'set' as const, t: { kind, n }, path, value: v }));
  });
}

/** One mutation. `strings`, `ids`: keys and segment ids (role tokens) a JSON field may be given. */
export function mutation(strings: readonly string[], ids: readonly string[]): fc.Arbitrary<Mutation> {
  const any = pickOf(ALL_KINDS);
  const json = pickOf([...JSON_KINDS]);
  return fc.oneof(
    {
      weight: 3,
      arbitrary: fc.record({
        op: fc.constant('flip' as const),
        t: any,
        at: fc.nat(),
        xor: fc.integer({ min: 1, max: 255 }),
      }),
    },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('truncate' as const), t: any, keep: fc.nat() }) },
    {
      weight: 1,
      arbitrary: fc.record({
        op: fc.constant('extend' as const),
        t: any,
        garbage: fc.oneof(
          fc.array(fc.nat(255), { minLength: 1, maxLength: 64 }),
          fc.integer({ min: 1, max: 5000 }).map((n) => Array.from({ length: n }, (_, i) => (i * 7) & 0xff)),
        ),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        op: fc.constant('zero' as const),
        t: any,
        at: fc.nat(),
        length: fc.integer({ min: 1, max: 9000 }),
      }),
    },
    {
      weight: 4,
      arbitrary: fc
        .oneof(
          fc.record({ t: pickOf(['segment']), f: fieldOf(SEGMENT_FIELDS) }),
          fc.record({ t: pickOf(['map', 'gen-map']), f: fieldOf(MAP_FIELDS) }),
        )
        .map(({ t, f }) => ({ op: 'field' as const, t, ...f })),
    },
    {
      weight: 6,
      arbitrary: fc.record({
        op: fc.constant('json' as const),
        t: json,
        pick: fc.nat(),
        value: jsonValue(strings),
      }),
    },
    { weight: 6, arbitrary: semantic(strings, ids) },
    {
      weight: 1,
      arbitrary: fc.record({
        op: fc.constant('swap' as const),
        kind: fc.constantFrom<ObjKind>('manifest', 'map', 'segment', 'gen-map', 'work'),
        a: fc.nat(63),
        b: fc.nat(63),
      }),
    },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('delete' as const), t: any }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('foreign' as const), t: any }) },
    {
      weight: 3,
      arbitrary: fc
        .record({ t: pickOf(['map', 'gen-map']), f: fc.oneof(fieldOf(MAP_FIELDS), fieldOf(EXTENT_FIELDS)) })
        .map(({ t, f }) => ({ op: 'forge-map' as const, t, ...f })),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        op: fc.constant('forge-size' as const),
        t: pickOf(['map', 'gen-map']),
        size: fc.constantFrom(0n, 4096n, 2n ** 32n, 2n ** 40n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n),
      }),
    },
    {
      weight: 2,
      arbitrary: fc
        .record({ t: pickOf(['segment']), f: fieldOf(INDEX_FIELDS) })
        .map(({ t, f }) => ({ op: 'forge-index' as const, t, ...f })),
    },
  );
}

/** One to three mutations, mostly one. */
export function mutations(strings: readonly string[], ids: readonly string[]): fc.Arbitrary<Mutation[]> {
  const one = mutation(strings, ids);
  return fc.oneof(
    { weight: 6, arbitrary: fc.tuple(one).map((m) => [...m]) },
    { weight: 2, arbitrary: fc.array(one, { minLength: 2, maxLength: 3 }) },
    // a lost generation with damaged work objects: the next compaction's resume path
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          fc.constantFrom<ObjKind>('work', 'journal', 'gen-map'),
          fc.oneof(one, semantic(strings, ids, ['journal', 'work'])),
        )
        .map(([kind, m]) => [
          { op: 'delete' as const, t: { kind: 'generation' as ObjKind, n: 0 } },
          m.op === 'set' ? m : retarget(m, kind),
        ]),
    },
  );
}

/** The mutation applied to an object of `kind` instead (where the op allows it). */
function retarget(m: Mutation, kind: ObjKind): Mutation {
  if (m.op === 'swap') return { ...m, kind };
  if ((m.op === 'json' || m.op === 'set') && !JSON_KINDS.has(kind))
    return { op: 'delete', t: { kind, n: m.t.n } };
  if (m.op === 'set') return { op: 'json', t: { kind, n: m.t.n }, pick: m.t.n, value: m.value };
  if ((m.op === 'field' || m.op === 'forge-index') && kind !== 'segment')
    return { op: 'flip', t: { kind, n: m.t.n }, at: 0, xor: 1 };
  if ((m.op === 'forge-map' || m.op === 'forge-size') && kind !== 'gen-map' && kind !== 'map')
    return { op: 'truncate', t: { kind, n: m.t.n }, keep: 7 };
  return { ...m, t: { kind, n: m.t.n } };
}

// ---------------------------------------------------------------------------------------------

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** The new value of a field of `width` that holds `cur`: `v` itself, or `cur` plus a delta (wrapping). */
function resolve(width: Width, cur: bigint, v: U): bigint {
  const max =
    width === 'u8' ? 0xffn : width === 'u16' ? 0xffffn : width === 'u32' ? 0xffffffffn : 2n ** 64n - 1n;
  const x = typeof v === 'number' ? cur + BigInt(v) : v;
  return (x + max + 1n) & max;
}

const WIDTH_BYTES: Record<Width, number> = { u8: 1, u16: 2, u32: 4, u64: 8, bytes8: 8 };

/** The field's value, or undefined when it lies outside `b` (an earlier mutation shortened it). */
function readField(b: Buffer, at: number, width: Width): bigint | undefined {
  if (at < 0 || at + WIDTH_BYTES[width] > b.length) return undefined;
  switch (width) {
    case 'u8':
      return BigInt(b[at]!);
    case 'u16':
      return BigInt(b.readUInt16LE(at));
    case 'u32':
      return BigInt(b.readUInt32LE(at));
    case 'u64':
    case 'bytes8':
      return b.readBigUInt64LE(at);
  }
}

function writeField(b: Buffer, at: number, width: Width, v: bigint): void {
  if (at < 0 || at + WIDTH_BYTES[width] > b.length) return;
  switch (width) {
    case 'u8':
      b[at] = Number(v);
      return;
    case 'u16':
      b.writeUInt16LE(Number(v), at);
      return;
    case 'u32':
      b.writeUInt32LE(Number(v), at);
      return;
    case 'u64':
    case 'bytes8':
      b.writeBigUInt64LE(v, at);
  }
}

interface SegmentLayout {
  readonly indexOffset: number;
  readonly indexLength: number;
  readonly frames: { offset: number; frameLength: number }[];
}

/** The pristine layout of a segment file (for placing frame mutations); undefined if it is not one. */
function segmentLayout(b: Buffer): SegmentLayout | undefined {
  if (b.length < 48) return undefined;
  const t = b.subarray(b.length - 32);
  const indexOffset = Number(t.readBigUInt64LE(0));
  const indexLength = t.readUInt32LE(8);
  if (indexOffset + indexLength + 32 !== b.length) return undefined;
  let raw: Buffer;
  try {
    raw = zstdDecompressSync(b.subarray(indexOffset, indexOffset + indexLength));
  } catch {
    return undefined;
  }
  const head = t.toString('latin1', 24, 32) === 'CDPSEGI2' ? 64 : 0;
  const frames: SegmentLayout['frames'] = [];
  for (let o = head; o + 48 <= raw.length; o += 48)
    frames.push({ offset: Number(raw.readBigUInt64LE(o + 32)), frameLength: raw.readUInt32LE(o + 40) });
  return { indexOffset, indexLength, frames };
}

const segmentIdOf = (rel: string): string | undefined => /([0-9a-f]{64})\.seg$/.exec(rel)?.[1];

export class Mutator {
  private readonly dir: string;
  private readonly safe: PristineSafe;
  private readonly other: PristineSafe;
  readonly applied: Applied = {
    notes: [],
    framesTouched: new Set(),
    rewrites: new Set(),
    changed: new Set(),
  };

  /** `dir`: the copy of `safe` to mutate; `other`: the other fixture safe (for foreign objects). */
  constructor(dir: string, safe: PristineSafe, other: PristineSafe) {
    this.dir = dir;
    this.safe = safe;
    this.other = other;
  }

  /** `value` with its role tokens replaced by the key or segment id of that role in this safe. */
  private resolveTokens(value: Json | undefined): Json | undefined {
    if (typeof value === 'string') {
      const m = /^@(key|id):(.+)$/.exec(value);
      const o = m && this.safe.objects.find((x) => x.role === m[2]);
      if (!m || !o) return value;
      return m[1] === 'key' ? `safes/${SAFE}/${o.rel}` : (segmentIdOf(o.rel) ?? value);
    }
    if (Array.isArray(value)) return value.map((v) => this.resolveTokens(v) ?? null);
    if (value && typeof value === 'object')
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, this.resolveTokens(v) ?? null]));
    return value;
  }

  private target(t: Pick): SafeObject | undefined {
    const list = this.safe.byKind.get(t.kind) ?? [];
    return list.length ? list[t.n % list.length] : undefined;
  }

  private path(o: SafeObject): string {
    return join(this.dir, o.rel);
  }

  private note(o: SafeObject, what: string): void {
    this.applied.notes.push(`${o.role} (${o.rel}): ${what}`);
    this.applied.changed.add(o.rel);
  }

  /** Applies `m`; a target that no longer exists (deleted by an earlier mutation) is skipped. */
  apply(m: Mutation): void {
    if (m.op === 'swap') {
      this.swap(m);
      return;
    }
    const o = this.target(m.t);
    if (!o) {
      this.applied.notes.push(`${m.op}: the safe has no ${m.t.kind}`);
      return;
    }
    const p = this.path(o);
    if (!existsSync(p)) {
      this.applied.notes.push(`${m.op} ${o.role}: already gone`);
      return;
    }
    const b = readFileSync(p);
    switch (m.op) {
      case 'flip':
      case 'zero': {
        if (b.length === 0) return;
        const at = m.at % b.length;
        const end = m.op === 'flip' ? at + 1 : Math.min(b.length, at + m.length);
        if (m.op === 'flip') b[at]! ^= m.xor;
        else b.fill(0, at, end);
        writeFileSync(p, b);
        this.frameHit(o, at, end - at);
        this.note(
          o,
          m.op === 'flip'
            ? `byte ${at} of ${b.length} ^= 0x${m.xor.toString(16)}`
            : `bytes ${at}..${end - 1} zeroed`,
        );
        break;
      }
      case 'truncate': {
        const keep = m.keep % Math.max(1, b.length);
        writeFileSync(p, b.subarray(0, keep));
        this.note(o, `truncated from ${b.length} to ${keep} bytes`);
        break;
      }
      case 'extend':
        writeFileSync(p, Buffer.concat([b, Buffer.from(m.garbage)]));
        this.note(o, `${m.garbage.length} garbage bytes appended`);
        break;
      case 'field':
        if (o.kind === 'segment') this.segmentField(o, b, m.field, m.value, m.i);
        else this.mapField(o, b, m.field, m.value, m.i, false);
        break;
      case 'json':
        this.json(o, b, m.pick, this.resolveTokens(m.value));
        break;
      case 'set':
        this.set(o, b, m.path, this.resolveTokens(m.value));
        break;
      case 'delete':
        unlinkSync(p);
        this.note(o, 'deleted');
        break;
      case 'foreign':
        this.foreign(o);
        break;
      case 'forge-map':
        this.mapField(o, b, m.field, m.value, m.i, true);
        break;
      case 'forge-size':
        this.forgeSize(o, b, m.size);
        break;
      case 'forge-index':
        this.forgeIndex(o, b, m.field, m.value, m.i);
        break;
    }
  }

  /** Records a field of a manifest or generation given another value (neither is authenticated). */
  private rewrote(o: SafeObject, path: readonly (string | number)[]): void {
    if (o.kind !== 'manifest' && o.kind !== 'generation') return;
    const field = path.filter((p) => typeof p === 'string' && p !== '*' && p !== '+').join('.');
    this.applied.rewrites.add(`${o.kind} ${field || '(root)'}`);
  }

  /** Records a segment whose frames region [16, indexOffset) the byte range touched. */
  private frameHit(o: SafeObject, at: number, length: number): void {
    if (o.kind !== 'segment') return;
    const layout = segmentLayout(readFileSync(join(this.safe.dir, o.rel)));
    if (layout && at < layout.indexOffset && at + length > 16)
      this.applied.framesTouched.add(segmentIdOf(o.rel)!);
  }

  private swap(m: { kind: ObjKind; a: number; b: number }): void {
    const list = this.safe.byKind.get(m.kind) ?? [];
    if (list.length < 2) return;
    const x = list[m.a % list.length]!;
    let y = list[m.b % list.length]!;
    if (x === y) y = list[(m.a + 1) % list.length]!;
    const px = this.path(x);
    const py = this.path(y);
    if (!existsSync(px) || !existsSync(py)) return;
    const tmp = `${px}.swap`;
    renameSync(px, tmp);
    renameSync(py, px);
    renameSync(tmp, py);
    this.note(x, `swapped with ${y.role}`);
    this.note(y, `swapped with ${x.role}`);
  }

  /** The object of the same role in the other fixture safe (same path where it has one). */
  private foreign(o: SafeObject): void {
    const same = join(this.other.dir, o.rel);
    const list = this.other.byKind.get(o.kind) ?? [];
    const i = Number(o.role.split('#')[1]);
    const from = existsSync(same)
      ? same
      : list.length
        ? join(this.other.dir, list[i % list.length]!.rel)
        : undefined;
    if (!from) return;
    writeFileSync(this.path(o), readFileSync(from));
    if (o.kind === 'segment') this.applied.framesTouched.add(segmentIdOf(o.rel)!);
    this.note(o, `replaced by ${from.slice(this.other.dir.length + 1)} of the ${this.other.variant} safe`);
  }

  private json(o: SafeObject, b: Buffer, pick: number, value: Json | undefined): void {
    let doc: Json;
    try {
      doc = JSON.parse(b.toString('utf8'));
    } catch {
      return;
    }
    const all = paths(doc);
    const at = all[pick % all.length]!;
    const before = getAt(doc, at);
    const next = setAt(doc, at, value);
    this.rewrote(o, at);
    writeFileSync(this.path(o), `${JSON.stringify(next, null, 1)}\n`);
    this.note(
      o,
      `${at.length ? at.join('.') : '(root)'}: ${short(before)} -> ${value === undefined ? '(removed)' : short(value)}`,
    );
  }

  /**
   * Puts `value` at `path` of a JSON object: a number indexes an array modulo its length, `*` is
   * every element, `+` appends.
   */
  private set(o: SafeObject, b: Buffer, path: readonly (string | number)[], value: Json | undefined): void {
    let doc: Json;
    try {
      doc = JSON.parse(b.toString('utf8'));
    } catch {
      return;
    }
    const hits: string[] = [];
    const walk = (node: Json, i: number, at: string): void => {
      const step = path[i]!;
      const last = i === path.length - 1;
      if (node === null || typeof node !== 'object') return;
      if (Array.isArray(node) && (step === '*' || typeof step === 'number' || step === '+')) {
        if (step === '+') {
          if (last && value !== undefined) {
            node.push(value);
            hits.push(`${at}.+`);
          }
          return;
        }
        if (node.length === 0) return;
        const idx = step === '*' ? node.map((_, k) => k) : [step % node.length];
        for (const k of idx.reverse()) {
          if (last) {
            if (value === undefined) node.splice(k, 1);
            else node[k] = structuredClone(value);
            hits.push(`${at}.${k}`);
          } else walk(node[k]!, i + 1, `${at}.${k}`);
        }
        return;
      }
      if (Array.isArray(node) || typeof step !== 'string') return;
      if (last) {
        if (value === undefined) delete node[step];
        else node[step] = structuredClone(value);
        hits.push(`${at}.${step}`);
      } else if (step in node) walk(node[step]!, i + 1, `${at}.${step}`);
    };
    walk(doc, 0, '');
    if (hits.length === 0) return;
    this.rewrote(o, path);
    writeFileSync(this.path(o), `${JSON.stringify(doc, null, 1)}\n`);
    this.note(
      o,
      `${hits.map((h) => h.slice(1)).join(', ')} := ${value === undefined ? '(removed)' : short(value)}`,
    );
  }

  private segmentField(o: SafeObject, b: Buffer, field: string, v: U, i: number): void {
    const width = SEGMENT_FIELDS[field as keyof typeof SEGMENT_FIELDS] as Width;
    const layout = segmentLayout(b);
    let at: number;
    if (field.startsWith('header.')) at = { magic: 0, version: 8, flags: 10, reserved: 12 }[field.slice(7)]!;
    else if (field.startsWith('trailer.'))
      at =
        b.length -
        32 +
        { indexOffset: 0, indexLength: 8, frameCount: 12, indexHash: 16, magic: 24 }[field.slice(8)]!;
    else {
      if (!layout || layout.frames.length === 0) return;
      const f = layout.frames[i % layout.frames.length]!;
      at =
        f.offset +
        { payloadLength: 0, plainLength: 4, codec: 8, flags: 9, reserved: 10, identity: 12 }[field.slice(6)]!;
      this.applied.framesTouched.add(segmentIdOf(o.rel)!);
    }
    const cur = readField(b, at, width);
    if (cur === undefined) return;
    const next = resolve(width, cur, v);
    writeField(b, at, width, next);
    writeFileSync(this.path(o), b);
    this.note(o, `${field} at ${at}: ${cur} -> ${next}`);
  }

  /**
   * A block map's header field, or (forged) an extent or table field of its body; `forge` then
   * updates the size and SHA-256 its manifest or generation records, as a writer would.
   */
  private mapField(o: SafeObject, b: Buffer, field: string, v: U, i: number, forge: boolean): void {
    let out: Buffer;
    let what: string;
    if (field.startsWith('header.')) {
      const width = MAP_FIELDS[field as keyof typeof MAP_FIELDS] as Width;
      const at = {
        magic: 0,
        version: 8,
        flags: 10,
        blockSize: 12,
        deviceSize: 16,
        extentCount: 24,
        segmentCount: 28,
      }[field.slice(7)]!;
      const cur = readField(b, at, width);
      if (cur === undefined) return;
      const next = resolve(width, cur, v);
      writeField(b, at, width, next);
      out = b;
      what = `${field}: ${cur} -> ${next}`;
    } else {
      if (b.length < 32) return;
      let body: Buffer;
      try {
        body = zstdDecompressSync(b.subarray(32));
      } catch {
        return;
      }
      const segments = b.readUInt32LE(28);
      const extents = b.readUInt32LE(24);
      const width = EXTENT_FIELDS[field as keyof typeof EXTENT_FIELDS] as Width;
      let at: number;
      if (field === 'table.segment') {
        if (segments === 0) return;
        at = (i % segments) * 32;
      } else {
        if (extents === 0) return;
        at =
          segments * 32 +
          (i % extents) * 24 +
          { first: 0, count: 8, kind: 12, reserved: 13, segment: 16, frame: 20 }[field.slice(7)]!;
      }
      const cur = readField(body, at, width);
      if (cur === undefined) return;
      const next =
        field === 'table.segment' ? cur ^ (typeof v === 'bigint' ? v | 1n : 1n) : resolve(width, cur, v);
      writeField(body, at, width, next);
      if (forge) this.applied.rewrites.add(`forged map ${field}`);
      out = Buffer.concat([b.subarray(0, 32), zstdCompressSync(body)]);
      what = `${field} at body ${at}: ${cur} -> ${next}`;
    }
    writeFileSync(this.path(o), out);
    this.note(o, `${forge ? 'forged ' : ''}${what}`);
    if (forge) this.rehash(o, out);
  }

  /**
   * A device that claims another size in its block map and in the manifest or generation entry
   * that names the map, consistently: huge devices (2^40, 2^53, 2^64 - 1 bytes) or one too small
   * for its extents.
   */
  private forgeSize(o: SafeObject, b: Buffer, size: bigint): void {
    if (b.length < 32) return;
    const cur = b.readBigUInt64LE(16);
    b.writeBigUInt64LE(size, 16);
    writeFileSync(this.path(o), b);
    this.note(o, `forged deviceSize: ${cur} -> ${size}`);
    this.applied.rewrites.add('forged device size');
    this.rehash(o, b, Number(size));
  }

  /**
   * Points the manifest or generation entry of map `o` at its new bytes (size and SHA-256), and
   * gives the device that names it `sizeBytes` when set.
   */
  private rehash(o: SafeObject, body: Buffer, sizeBytes?: number): void {
    const key = `safes/${SAFE}/${o.rel}`;
    const owners = this.safe.objects.filter((x) => x.kind === 'manifest' || x.kind === 'generation');
    for (const x of owners) {
      const p = this.path(x);
      if (!existsSync(p)) continue;
      let doc: Json;
      try {
        doc = JSON.parse(readFileSync(p, 'utf8'));
      } catch {
        continue;
      }
      let hit = false;
      const names = (v: { [k: string]: Json }): boolean =>
        (v.blockMap as { key?: Json } | null)?.key === key ||
        (Array.isArray(v.parts) &&
          v.parts.some((p) => (p as { blockMap?: { key?: Json } })?.blockMap?.key === key));
      const visit = (v: Json): void => {
        if (Array.isArray(v)) v.forEach(visit);
        else if (v && typeof v === 'object') {
          if (sizeBytes !== undefined && 'sizeBytes' in v && names(v)) v.sizeBytes = sizeBytes;
          if (v.key === key && typeof v.sha256 === 'string') {
            v.sha256 = sha256(body);
            v.bytes = body.length;
            hit = true;
          }
          Object.values(v).forEach(visit);
        }
      };
      visit(doc);
      if (hit) {
        writeFileSync(p, `${JSON.stringify(doc, null, 1)}\n`);
        this.note(x, `re-hashed for the forged ${o.role}`);
      }
    }
  }

  /**
   * A segment's footer index edited and recompressed, with the trailer (length, frame count,
   * checksum) and the manifest's recorded size brought up to date: a consistent, wrong index.
   */
  private forgeIndex(o: SafeObject, b: Buffer, field: string, v: U, i: number): void {
    const layout = segmentLayout(b);
    if (!layout) return;
    const trailer = Buffer.from(b.subarray(b.length - 32));
    let raw = zstdDecompressSync(b.subarray(layout.indexOffset, layout.indexOffset + layout.indexLength));
    const head = trailer.toString('latin1', 24, 32) === 'CDPSEGI2' ? 64 : 0;
    const n = (raw.length - head) / 48;
    let what: string;
    if (field === 'index.drop-last') {
      raw = raw.subarray(0, raw.length - 48);
      what = 'last index entry dropped';
    } else if (field === 'index.append') {
      raw = Buffer.concat([raw, raw.subarray(raw.length - 48)]);
      what = 'last index entry repeated';
    } else if (field.startsWith('binding.')) {
      const at = field === 'binding.segment' ? 0 : 32;
      if (head === 0) return;
      raw[at]! ^= (i & 0xff) | 1;
      what = `${field} changed`;
    } else {
      if (n === 0) return;
      const e = i % n;
      const width = INDEX_FIELDS[field as keyof typeof INDEX_FIELDS] as Width;
      const at =
        head + e * 48 + { offset: 32, frameLength: 40, plainLength: 44, identity: 0 }[field.slice(6)]!;
      const cur = readField(raw, at, width);
      if (cur === undefined) return;
      const next = resolve(width, cur, v);
      writeField(raw, at, width, next);
      what = `${field} of entry ${e}: ${cur} -> ${next}`;
      if (field === 'entry.offset' || field === 'entry.identity')
        this.applied.rewrites.add(`forged index ${field}`);
    }
    const index = zstdCompressSync(raw);
    trailer.writeUInt32LE(index.length, 8);
    trailer.writeUInt32LE((raw.length - head) / 48, 12);
    createHash('sha256').update(index).digest().copy(trailer, 16, 0, 8);
    const out = Buffer.concat([b.subarray(0, layout.indexOffset), index, trailer]);
    writeFileSync(this.path(o), out);
    this.applied.framesTouched.add(segmentIdOf(o.rel)!);
    this.note(o, `forged index: ${what}`);
    this.resize(o, out.length, (raw.length - head) / 48);
  }

  /** The manifests' record of a segment's size and frame count, brought up to date. */
  private resize(o: SafeObject, bytes: number, frames: number): void {
    const key = `safes/${SAFE}/${o.rel}`;
    for (const x of this.safe.objects.filter((y) => y.kind === 'manifest' || y.kind === 'generation')) {
      const p = this.path(x);
      if (!existsSync(p)) continue;
      let doc: {
        segments?: { key?: string; bytes?: number; frames?: number }[];
        written?: { key?: string; bytes?: number; frames?: number }[];
      };
      try {
        doc = JSON.parse(readFileSync(p, 'utf8'));
      } catch {
        continue;
      }
      let hit = false;
      for (const s of [
        ...(Array.isArray(doc.segments) ? doc.segments : []),
        ...(Array.isArray(doc.written) ? doc.written : []),
      ]) {
        if (s && typeof s === 'object' && s.key === key) {
          s.bytes = bytes;
          s.frames = frames;
          hit = true;
        }
      }
      if (hit) {
        writeFileSync(p, `${JSON.stringify(doc, null, 1)}\n`);
        this.note(x, `segment size re-recorded for the forged ${o.role}`);
      }
    }
  }
}

function short(v: Json | undefined): string {
  const s = JSON.stringify(v);
  return s === undefined ? 'undefined' : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/**
 * Strings of the safe a JSON field may be given: its keys (and a few of nobody), its segment ids,
 * as role tokens (`@key:seg#3`, `@id:seg#3`) that the mutator resolves in the safe it mutates.
 */
export function safeStrings(p: PristineSafe): { keys: string[]; ids: string[] } {
  const keys = p.objects.map((o) => `@key:${o.role}`);
  const ids = p.objects.flatMap((o) => (o.kind === 'segment' ? [`@id:${o.role}`] : []));
  return { keys: [...keys, 'safes/other/safe.json', 'safes/fz/../fz/safe.json', 'fz'], ids };
}

/** Size of a file, or -1 when it is gone. */
export function sizeOf(p: string): number {
  return existsSync(p) ? statSync(p).size : -1;
}
