/**
 * The bucket layout: every object key is built and parsed here, and nowhere else.
 * Grammar (docs/FORMAT.md §2 and §9a.1):
 *
 *   safes/<safe>/safe.json                   the safe's config (format version, owner, encryption)
 *   safes/<safe>/rp/<rp:010>.json            the manifest that commits recovery point <rp>
 *   safes/<safe>/map/<rp:010>/<run>/<device>.map  the block map of <device> in <rp>, written by
 *                                            backup run <run> (16 hex; v1 wrote map/<rp:010>/<device>.map)
 *   safes/<safe>/seg/<id:0:2>/<id>.seg       a segment (id = 64 random hex digits)
 *   safes/<safe>/policy.json                 the retention policy
 *   safes/<safe>/locks/<id>.json             a lock (id = 32 random hex digits; docs/FORMAT.md §7a)
 *   safes/<safe>/damage/<segment>/<run>.json frames of a segment that `verify` found damaged
 *   safes/<safe>/gen/<g:010>.json            compaction generation <g>: the view of RPs ≤ its upTo
 *   safes/<safe>/gen/<g:010>/<attempt>/…     what attempt <attempt> (16 hex) at generation <g> writes:
 *       journal.json, <rp:010>/<device>.map, <rp:010>/<first:015>/<device>.map,
 *       (live|maps)-<shard:06>.json, rewrite.json
 *   (v1 wrote the attempt's objects straight under gen/<g:010>/, and a lease at lock.json)
 *
 * Zero-padded numbers make LIST order equal recovery-point order. Every object a writer creates has
 * a name no other writer uses (random ids, or a number claimed with a conditional create), so no
 * writer ever replaces another's object.
 */
import { BadKeyError } from './errors.ts';

/** Everything the agent uploads lives under this prefix; ingest listens on it. */
export const SAFES_PREFIX = 'safes/';

/** The ids of the layout: every schema and parser checks them with these (and nowhere else). */
export const SAFE_ID = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const DEVICE_ID = /^[a-z0-9][a-z0-9._-]{0,62}$/;
export const SEGMENT_ID = /^[0-9a-f]{64}$/;
/** A backup run's or a compaction attempt's id: 16 hex digits. */
export const RUN_ID = /^[0-9a-f]{16}$/;
export const LOCK_ID = /^[0-9a-f]{32}$/;
const RP_DIGITS = 10;
export const MAX_RP = 10 ** RP_DIGITS - 1;

export type ParsedKey =
  | { readonly kind: 'safe-config'; readonly safe: string }
  | { readonly kind: 'manifest'; readonly safe: string; readonly rp: number }
  | {
      readonly kind: 'block-map';
      readonly safe: string;
      readonly rp: number;
      readonly device: string;
      /** The backup run that wrote it (absent in the v1 layout). */
      readonly run?: string;
    }
  | { readonly kind: 'segment'; readonly safe: string; readonly segment: string }
  | { readonly kind: 'policy'; readonly safe: string }
  | { readonly kind: 'lock'; readonly safe: string; readonly id: string }
  /** v1's compaction lease (lock.json), replaced by locks/; left by an older agent. */
  | { readonly kind: 'legacy-lease'; readonly safe: string }
  | { readonly kind: 'damage'; readonly safe: string; readonly segment: string; readonly run: string }
  | { readonly kind: 'generation'; readonly safe: string; readonly generation: number }
  | {
      readonly kind: 'journal';
      readonly safe: string;
      readonly generation: number;
      /** The attempt (absent in the v1 layout). */
      readonly attempt?: string;
    }
  | {
      readonly kind: 'generation-map';
      readonly safe: string;
      readonly generation: number;
      readonly attempt?: string;
      readonly rp: number;
      readonly device: string;
      /** Set for one block-range part of the map: its first block. */
      readonly first?: number;
    }
  | {
      readonly kind: 'compaction-work';
      readonly safe: string;
      readonly generation: number;
      readonly attempt?: string;
      readonly name: string;
    };

export function isSafeId(s: string): boolean {
  return SAFE_ID.test(s);
}

export function isDeviceId(s: string): boolean {
  return DEVICE_ID.test(s);
}

export function isSegmentId(s: string): boolean {
  return SEGMENT_ID.test(s);
}

export function isRunId(s: string): boolean {
  return RUN_ID.test(s);
}

function check(ok: boolean, key: string, reason: string): void {
  if (!ok) throw new BadKeyError(key, reason);
}

function rpPart(rp: number): string {
  check(
    Number.isSafeInteger(rp) && rp >= 1 && rp <= MAX_RP,
    String(rp),
    `recovery point must be 1..${MAX_RP}`,
  );
  return String(rp).padStart(RP_DIGITS, '0');
}

function safePrefixChecked(safe: string): string {
  check(isSafeId(safe), safe, 'safe id must match [a-z0-9][a-z0-9-]{0,62}');
  return `${SAFES_PREFIX}${safe}/`;
}

export function safePrefix(safe: string): string {
  return safePrefixChecked(safe);
}

export function safeConfigKey(safe: string): string {
  return `${safePrefixChecked(safe)}safe.json`;
}

export function manifestPrefix(safe: string): string {
  return `${safePrefixChecked(safe)}rp/`;
}

export function manifestKey(safe: string, rp: number): string {
  return `${manifestPrefix(safe)}${rpPart(rp)}.json`;
}

function runPart(run: string): string {
  check(isRunId(run), run, 'run or attempt id must be 16 lowercase hex digits');
  return run;
}

function devicePart(device: string): string {
  check(isDeviceId(device), device, 'device id must match [a-z0-9][a-z0-9._-]{0,62}');
  return device;
}

/** The block map of `device` in RP `rp`, as backup run `run` writes it. */
export function blockMapKey(safe: string, rp: number, device: string, run: string): string {
  return `${safePrefixChecked(safe)}map/${rpPart(rp)}/${runPart(run)}/${devicePart(device)}.map`;
}

/** Where format v1 wrote the block map of `device` in RP `rp` (read, never written). */
export function legacyBlockMapKey(safe: string, rp: number, device: string): string {
  return `${safePrefixChecked(safe)}map/${rpPart(rp)}/${devicePart(device)}.map`;
}

export function segmentKey(safe: string, segment: string): string {
  check(isSegmentId(segment), segment, 'segment id must be 64 lowercase hex digits');
  return `${safePrefixChecked(safe)}seg/${segment.slice(0, 2)}/${segment}.seg`;
}

export function policyKey(safe: string): string {
  return `${safePrefixChecked(safe)}policy.json`;
}

export function locksPrefix(safe: string): string {
  return `${safePrefixChecked(safe)}locks/`;
}

export function lockKey(safe: string, id: string): string {
  check(LOCK_ID.test(id), id, 'lock id must be 32 lowercase hex digits');
  return `${locksPrefix(safe)}${id}.json`;
}

export function damagePrefix(safe: string): string {
  return `${safePrefixChecked(safe)}damage/`;
}

/** A record of damaged frames of `segment`, written by one verify run. */
export function damageKey(safe: string, segment: string, run: string): string {
  check(isSegmentId(segment), segment, 'segment id must be 64 lowercase hex digits');
  return `${damagePrefix(safe)}${segment}/${runPart(run)}.json`;
}

export function generationPrefix(safe: string): string {
  return `${safePrefixChecked(safe)}gen/`;
}

/** Generation numbers share the RP grammar (1 … 9 999 999 999, ten digits). */
export function generationKey(safe: string, generation: number): string {
  return `${generationPrefix(safe)}${rpPart(generation)}.json`;
}

/** The attempts at generation <g> live under this prefix, one folder each. */
export function attemptsPrefix(safe: string, generation: number): string {
  return `${generationPrefix(safe)}${rpPart(generation)}/`;
}

/** Everything attempt <attempt> at generation <g> writes besides segments lives under this prefix. */
export function generationWorkPrefix(safe: string, generation: number, attempt: string): string {
  return `${attemptsPrefix(safe, generation)}${runPart(attempt)}/`;
}

export function journalKey(safe: string, generation: number, attempt: string): string {
  return `${generationWorkPrefix(safe, generation, attempt)}journal.json`;
}

export function generationMapKey(
  safe: string,
  generation: number,
  attempt: string,
  rp: number,
  device: string,
): string {
  return `${generationWorkPrefix(safe, generation, attempt)}${rpPart(rp)}/${devicePart(device)}.map`;
}

/** One block-range part of a map rebuilt by generation <g> (sharded compaction). */
export function generationMapPartKey(
  safe: string,
  generation: number,
  attempt: string,
  rp: number,
  device: string,
  first: number,
): string {
  check(
    Number.isSafeInteger(first) && first >= 0 && first < 1e15,
    String(first),
    'first block must be 0..1e15-1',
  );
  return `${generationWorkPrefix(safe, generation, attempt)}${rpPart(rp)}/${String(first).padStart(15, '0')}/${devicePart(device)}.map`;
}

/** A compaction's work objects: a shard's liveness or maps (`live`/`maps`), or the rewrite plan. */
export function compactionWorkKey(
  safe: string,
  generation: number,
  attempt: string,
  name: 'rewrite' | `${'live' | 'maps'}-${number}`,
): string {
  const m = /^(live|maps)-(\d+)$/.exec(name);
  const file = m ? `${m[1]}-${m[2]!.padStart(6, '0')}` : name;
  return `${generationWorkPrefix(safe, generation, attempt)}${file}.json`;
}

function parseRp(key: string, digits: string): number {
  check(/^[0-9]{10}$/.test(digits), key, 'recovery point must be 10 digits');
  const rp = Number(digits);
  check(rp >= 1, key, 'recovery point 0 does not exist');
  return rp;
}

/** Parses any key of the layout; throws BadKeyError naming what is wrong. */
export function parseKey(key: string): ParsedKey {
  check(key.startsWith(SAFES_PREFIX), key, `not under ${SAFES_PREFIX}`);
  const parts = key.slice(SAFES_PREFIX.length).split('/');
  const safe = parts[0] ?? '';
  check(isSafeId(safe), key, 'bad safe id');
  const rest = parts.slice(1);
  if (rest.length === 1 && rest[0] === 'safe.json') return { kind: 'safe-config', safe };
  if (rest.length === 1 && rest[0] === 'policy.json') return { kind: 'policy', safe };
  if (rest.length === 1 && rest[0] === 'lock.json') return { kind: 'legacy-lease', safe };
  if (rest.length === 2 && rest[0] === 'locks') {
    const m = /^([0-9a-f]{32})\.json$/.exec(rest[1] ?? '');
    check(m !== null, key, 'lock must be <32 hex>.json');
    return { kind: 'lock', safe, id: m![1]! };
  }
  if (rest.length === 3 && rest[0] === 'damage') {
    const m = /^([0-9a-f]{16})\.json$/.exec(rest[2] ?? '');
    check(isSegmentId(rest[1] ?? '') && m !== null, key, 'damage record must be <segment>/<16 hex>.json');
    return { kind: 'damage', safe, segment: rest[1]!, run: m![1]! };
  }
  if (rest[0] === 'gen') return parseGenerationKey(key, safe, rest.slice(1));
  if (rest.length === 2 && rest[0] === 'rp') {
    const m = /^(.*)\.json$/.exec(rest[1] ?? '');
    check(m !== null, key, 'manifest must end in .json');
    return { kind: 'manifest', safe, rp: parseRp(key, m![1]!) };
  }
  if ((rest.length === 3 || rest.length === 4) && rest[0] === 'map') {
    const rp = parseRp(key, rest[1] ?? '');
    const m = /^(.*)\.map$/.exec(rest[rest.length - 1] ?? '');
    check(m !== null && isDeviceId(m[1]!), key, 'block map must be <device>.map');
    if (rest.length === 3) return { kind: 'block-map', safe, rp, device: m![1]! };
    check(isRunId(rest[2] ?? ''), key, 'block map run must be 16 hex digits');
    return { kind: 'block-map', safe, rp, device: m![1]!, run: rest[2]! };
  }
  if (rest.length === 3 && rest[0] === 'seg') {
    const m = /^([0-9a-f]{64})\.seg$/.exec(rest[2] ?? '');
    check(m !== null, key, 'segment must be <64 hex>.seg');
    check(rest[1] === m![1]!.slice(0, 2), key, 'segment fan-out folder must be the first two hex digits');
    return { kind: 'segment', safe, segment: m![1]! };
  }
  throw new BadKeyError(key, 'not a key of the bucket layout');
}

function parseGenerationKey(key: string, safe: string, rest: string[]): ParsedKey {
  if (rest.length === 1) {
    const m = /^(.*)\.json$/.exec(rest[0] ?? '');
    check(m !== null, key, 'generation must end in .json');
    return { kind: 'generation', safe, generation: parseRp(key, m![1]!) };
  }
  const generation = parseRp(key, rest[0] ?? '');
  // v2: gen/<g>/<attempt>/…; v1: gen/<g>/… (no attempt folder)
  const attempt = isRunId(rest[1] ?? '') ? rest[1]! : undefined;
  const work = attempt ? rest.slice(2) : rest.slice(1);
  const at = attempt ? { attempt } : {};
  if (work.length === 1 && work[0] === 'journal.json') return { kind: 'journal', safe, generation, ...at };
  if (work.length === 1 && /^((live|maps)-[0-9]{6}|rewrite)\.json$/.test(work[0] ?? ''))
    return { kind: 'compaction-work', safe, generation, ...at, name: work[0]!.slice(0, -5) };
  if (work.length === 3 || work.length === 2) {
    const rp = parseRp(key, work[0] ?? '');
    const m = /^(.*)\.map$/.exec(work[work.length - 1] ?? '');
    check(m !== null && isDeviceId(m[1]!), key, 'generation block map must be <device>.map');
    if (work.length === 2) return { kind: 'generation-map', safe, generation, ...at, rp, device: m![1]! };
    check(/^[0-9]{15}$/.test(work[1] ?? ''), key, 'map part must be under its 15-digit first block');
    return { kind: 'generation-map', safe, generation, ...at, rp, device: m![1]!, first: Number(work[1]) };
  }
  throw new BadKeyError(key, 'not a key of the bucket layout');
}
