/**
 * The consumers the fuzzer feeds, called in-process the way a user reaches them (the index
 * Lambda's use case on an arrival event; the agent's verify, restore, backup and compact commands),
 * each with the oracle that judges its outcome on a mutated safe.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { FsObjectStore } from '#adapters/fs-store.ts';
import { CdpError } from '#core/errors.ts';
import type { SafeKeys } from '#core/format/crypto.ts';
import { manifestKey } from '#core/keys.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import { InvalidRpError, readManifest, verifyReferences } from '#core/rp-validation.ts';
import { backupCommand } from '../../../agent/commands/backup.ts';
import { compactCommand } from '../../../agent/commands/compact.ts';
import { restoreCommand } from '../../../agent/commands/restore.ts';
import { verifyCommand } from '../../../agent/commands/verify.ts';
import { EXIT } from '../../../agent/exit-codes.ts';
import { handleArrival, type IndexOutcome } from '../../../functions/ingest/index-manifest.ts';
import { MemoryCatalog } from '../../support/fakes/memory-catalog.ts';
import { objectCreated } from '../../support/rp-fixture.ts';
import { BS, DEVICES, type Fixture, type PristineSafe, SAFE } from './fixture.ts';
import type { Applied } from './mutations.ts';
import {
  contents,
  dueGarbage,
  judgeThrown,
  losses,
  readerOf,
  readsBack,
  type Snapshot,
  snapshotOf,
  staleLock,
  unclear,
} from './oracle.ts';
import { quiet } from './quiet.ts';

export const CONSUMERS = ['index', 'verify', 'restore', 'backup', 'compact'] as const;
export type Consumer = (typeof CONSUMERS)[number];

/** The consumer's own choices for one input (which RP, which device, …). */
export type Params =
  | { readonly consumer: 'index'; readonly order: 'ascending' | 'descending' | 'mutated-first' }
  | { readonly consumer: 'verify'; readonly rp?: string; readonly device?: string; readonly withKey: boolean }
  | {
      readonly consumer: 'restore';
      readonly rp: string;
      readonly device: string;
      readonly allowDamaged: boolean;
      readonly withKey: boolean;
    }
  | { readonly consumer: 'backup'; readonly state: 'kept' | 'lost' }
  | { readonly consumer: 'compact'; readonly grace?: string };

const rpArg = fc.constantFrom('1', '2', '3', '4', 'latest');
const device = fc.constantFrom(...DEVICES);

export function paramsOf(c: Consumer): fc.Arbitrary<Params> {
  switch (c) {
    case 'index':
      return fc.record({
        consumer: fc.constant(c),
        order: fc.constantFrom('ascending', 'descending', 'mutated-first'),
      }) as fc.Arbitrary<Params>;
    case 'verify':
      return fc.record(
        {
          consumer: fc.constant(c),
          rp: rpArg,
          device,
          withKey: fc.oneof(
            { weight: 9, arbitrary: fc.constant(true) },
            { weight: 1, arbitrary: fc.constant(false) },
          ),
        },
        { requiredKeys: ['consumer', 'withKey'] },
      ) as fc.Arbitrary<Params>;
    case 'restore':
      return fc.record({
        consumer: fc.constant(c),
        rp: rpArg,
        device,
        allowDamaged: fc.boolean(),
        withKey: fc.oneof(
          { weight: 9, arbitrary: fc.constant(true) },
          { weight: 1, arbitrary: fc.constant(false) },
        ),
      }) as fc.Arbitrary<Params>;
    case 'backup':
      return fc.record({
        consumer: fc.constant(c),
        state: fc.constantFrom('kept', 'lost'),
      }) as fc.Arbitrary<Params>;
    case 'compact':
      return fc.record(
        {
          consumer: fc.constant(c),
          grace: fc.oneof(
            { weight: 2, arbitrary: fc.constant('2h') },
            { weight: 1, arbitrary: fc.constant('0s') },
          ),
        },
        { requiredKeys: ['consumer'] },
      ) as fc.Arbitrary<Params>;
  }
}

export interface Case {
  readonly fx: Fixture;
  readonly safe: PristineSafe;
  /** The mutated copy: its directory (named like the safe) and its agent state. */
  readonly dir: string;
  readonly stateDir: string;
  /** A scratch directory outside the safe (restore targets). */
  readonly scratch: string;
  readonly applied: Applied;
  /** The pristine safe's keys (whatever a mutation did to safe.json). */
  readonly keys: SafeKeys | undefined;
  /** Lock ids this process holds (the fixtures'). */
  readonly heldLocks: ReadonlySet<string>;
}

export interface Result {
  /** The outcome's kind, for the tally (`quarantined`, `committed`, `exit 8`, `E_SAFE_FORMAT (exit 4)`…). */
  readonly outcomes: string[];
  /** Crashes, deletions, wrong data: each is a failure. */
  readonly problems: string[];
  /** Deletions the protocol allows (stale locks, garbage past its grace period). */
  readonly excused: string[];
  readonly deletions: number;
  readonly crashes: number;
}

class Judge {
  readonly outcomes: string[] = [];
  readonly problems: string[] = [];
  crashes = 0;
  outcome(label: string): void {
    this.outcomes.push(label);
  }
  problem(p: string, crash = false): void {
    this.problems.push(p);
    if (crash) this.crashes++;
  }
}

const CORRUPT = /^corrupt:([0-9a-f]{64}|undefined):/;

/**
 * Judges a readback verdict given what the mutation did: 'ok' (exact, or frame damage where the
 * consumer does not read frames and the mutation damaged them), 'rewrite' (other data of the same
 * size after a consistent rewrite of unauthenticated metadata: undetectable by design, FORMAT.md
 * §10; counted, not failed), or 'bad'.
 */
function judged(verdict: string, c: Case, frameDamageOk: boolean): 'ok' | 'rewrite' | 'bad' {
  if (verdict === 'exact') return 'ok';
  const m = CORRUPT.exec(verdict);
  if (m && frameDamageOk && c.applied.framesTouched.has(m[1]!)) return 'ok';
  return c.applied.rewrites.size > 0 && verdict.startsWith('different bytes') ? 'rewrite' : 'bad';
}

/** The outcome label of an input whose data read back different after an undetectable rewrite. */
export const REWRITE = 'accepted an undetectable rewrite (FORMAT.md §10)';

// ------------------------------------------------------------------------------------------ index

async function feedIndex(c: Case, p: Params & { consumer: 'index' }, j: Judge): Promise<void> {
  const store = new FsObjectStore(c.dir, SAFE);
  const catalog = new MemoryCatalog();
  const deps = { catalog, bucket: 'fuzz-bucket', storeFor: () => store, now: () => new Date() };
  const manifests = c.fx.rps.map((rp) => manifestKey(SAFE, rp));
  const mutated = [...c.applied.changed].map((rel) => `safes/${SAFE}/${rel}`);
  const order =
    p.order === 'ascending'
      ? manifests
      : p.order === 'descending'
        ? [...manifests].reverse()
        : [...mutated, ...manifests];
  const outcomes: IndexOutcome[] = [];
  const flatten = (o: IndexOutcome): void => {
    outcomes.push(o);
    if ('children' in o) for (const ch of o.children) flatten(ch);
  };
  for (const key of order) {
    const path = join(c.dir, key.slice(`safes/${SAFE}/`.length));
    const size = existsSync(path) ? statSync(path).size : 0;
    try {
      flatten(await handleArrival(deps, objectCreated('fuzz-bucket', key, size)));
    } catch (e) {
      if (e instanceof CdpError && e.code === 'E_PARENT_PENDING') {
        j.outcome('waiting');
        continue;
      }
      const v = judgeThrown(e);
      j.outcome(`threw ${v.label}`);
      if (!v.ok) j.problem(`index ${key}: ${v.problem}`, true);
      // a bad upload is quarantined, not retried until the dead-letter queue; the generation is no
      // part of an upload (compaction writes it): a damaged one may stop indexing, named and loud
      else if (!/\/gen\//.test((e as Error).message))
        j.problem(`index ${key}: threw ${v.label} instead of quarantining: ${(e as Error).message}`);
    }
  }
  // the RP as uploaded (its manifests' chain), or as the restore function serves it (through the
  // safe's newest generation, which may retain it after merging its parent away): exact in one
  const uploaded = readerOf(c.dir, c.keys, false);
  const served = readerOf(c.dir, c.keys);
  for (const o of outcomes) {
    j.outcome(o.outcome);
    if (o.outcome === 'quarantined' && unclear(o.reason))
      j.problem(`index quarantined ${o.key} without a clear reason: ${o.reason}`);
    if (o.outcome !== 'committed') continue;
    const rec = await catalog.getRp(SAFE, o.rp);
    for (const d of rec?.devices ?? []) {
      const expected = c.fx.images[o.rp]?.[d.id as 'd' | 'e'];
      const verdicts = [await readsBack(uploaded, o.rp, d.id, expected, c.keys)];
      // ingest checks structure, not block data: a damaged frame is found by restore and verify
      if (judged(verdicts[0]!, c, true) !== 'ok')
        verdicts.push(await readsBack(served, o.rp, d.id, expected, c.keys));
      const v = verdicts.map((x) => judged(x, c, true)).sort((a, b) => RANK[a] - RANK[b])[0]!;
      if (v === 'rewrite') j.outcome(REWRITE);
      if (v !== 'bad') continue;
      j.problem(await blame(catalog, c, store, o.rp, d.id, verdicts));
    }
  }
}

const RANK = { ok: 0, rewrite: 1, bad: 2 } as const;

/** Why the ingest validation (core/rp-validation.ts) rejects RP `rp` as uploaded, or undefined. */
async function validationRejects(
  store: ObjectStore,
  catalog: MemoryCatalog,
  rp: number,
): Promise<string | undefined> {
  try {
    const read = await readManifest(store, manifestKey(SAFE, rp));
    await verifyReferences(store, read, async (ids) => {
      const recs = await catalog.getSegments(SAFE, ids);
      return new Map([...recs].map(([id, x]) => [id, { id, bytes: x.bytes, frames: x.frames }]));
    });
    return undefined;
  } catch (e) {
    if (e instanceof InvalidRpError) return e.reason;
    throw e;
  }
}

/**
 * What went wrong when the index committed RP `rp` whose device does not read back, as precisely
 * as the oracle can tell: the upload that holds the damage (the RP that owns the segment or block
 * map the failing read names, else the oldest owner of what the mutation changed) was recorded
 * expired without validation, or was committed although its validation rejects it.
 */
async function blame(
  catalog: MemoryCatalog,
  c: Case,
  store: ObjectStore,
  rp: number,
  device: string,
  verdicts: readonly string[],
): Promise<string> {
  const owner = damagedUpload(c, rp, verdicts);
  const state = owner === undefined ? undefined : String((await catalog.getRp(SAFE, owner))?.state);
  const reads = `device ${device}: ${verdicts.at(-1)}`;
  if (owner !== undefined && owner < rp && state === 'expired')
    return `index committed RP ${rp} over RP ${owner}, which it recorded expired without validating it, and whose damaged objects RP ${rp} reads: ${reads}`;
  const rejected = await validationRejects(store, catalog, owner ?? rp);
  if (rejected !== undefined && (state === 'committed' || owner === undefined || owner === rp))
    return `index committed RP ${rp} although validating the upload of RP ${owner ?? rp} rejects it (${rejected}): ${reads}`;
  return `index committed RP ${rp}, whose ${reads} does not read back`;
}

/** The RP (at most `rp`) whose upload holds the damage the failing reads name, or owns the mutated objects. */
function damagedUpload(c: Case, rp: number, verdicts: readonly string[]): number | undefined {
  const owner = (rel: string): number | undefined => c.safe.uploadOf.get(rel);
  for (const v of verdicts) {
    const seg = /segment ([0-9a-f]{64})/.exec(v)?.[1];
    const map = /block map safes\/fz\/(map\/\S+\.map)/.exec(v)?.[1];
    const named = seg ? [...c.safe.uploadOf.keys()].find((rel) => rel.endsWith(`${seg}.seg`)) : map;
    const r = named === undefined ? undefined : owner(named);
    if (r !== undefined && r <= rp) return r;
  }
  const owners = [...c.applied.changed].flatMap((rel) => {
    const r = owner(rel);
    return r === undefined || r > rp ? [] : [r];
  });
  return owners.length > 0 ? Math.min(...owners) : undefined;
}

// ----------------------------------------------------------------------------------------- verify

interface VerifyJson {
  ok: boolean;
  problems: string[];
  results: (
    | { rp: number; device: string; error: string }
    | { rp: number; device: string; damaged: { reason: string }[] }
  )[];
}

function lastJson<T>(stdout: string): T | undefined {
  const text = stdout.trim();
  for (const candidate of [text, text.slice(text.lastIndexOf('\n{') + 1)]) {
    try {
      return JSON.parse(candidate) as T;
    } catch {
      /* next */
    }
  }
  return undefined;
}

async function feedVerify(c: Case, p: Params & { consumer: 'verify' }, j: Judge): Promise<void> {
  const r = await quiet(() =>
    verifyCommand({
      safe: c.dir,
      rp: p.rp,
      device: p.device,
      encryptKeyFile: p.withKey ? c.safe.keyFile : undefined,
      json: true,
    }),
  );
  if (r.error !== undefined) return thrown(j, 'verify', r.error);
  const out = lastJson<VerifyJson>(r.stdout);
  j.outcome(`exit ${r.value}`);
  if (!out) return j.problem(`verify exited ${r.value} without its JSON result: ${r.stdout.slice(0, 300)}`);
  if (r.value === EXIT.ok) {
    if (!out.ok) j.problem('verify exited 0 but reported a problem');
    const reader = readerOf(c.dir, c.keys);
    for (const res of out.results) {
      const expected = c.fx.images[res.rp]?.[res.device as 'd' | 'e'];
      let verdict = await readsBack(reader, res.rp, res.device, expected, c.keys);
      // the reader checks each frame against the segment's index too; verify proves what a restore
      // does, which walks frames by their headers: when they disagree, the restore decides
      if (judged(verdict, c, false) === 'bad') verdict = await restored(c, res.rp, res.device, expected);
      const v = judged(verdict, c, false);
      if (v === 'rewrite') j.outcome(REWRITE);
      if (v === 'bad')
        j.problem(`verify passed RP ${res.rp} device ${res.device}, which does not restore: ${verdict}`);
    }
    return;
  }
  if (r.value !== EXIT.damaged) return j.problem(`verify exited ${r.value}`);
  const named = out.results.filter((x) => ('error' in x ? true : x.damaged.length > 0));
  if (named.length === 0 && out.problems.length === 0) j.problem('verify exited 8 naming nothing');
  for (const x of named) {
    const reasons = 'error' in x ? [x.error] : x.damaged.map((d) => d.reason);
    for (const why of reasons)
      if (unclear(why))
        j.problem(`verify: RP ${x.rp} device ${x.device} named without a clear reason: ${why}`, true);
  }
}

/** What `cdp-agent restore` of the device at `rp` gives: 'exact', 'different bytes' or its failure. */
async function restored(c: Case, rp: number, device: string, expected: Buffer | undefined): Promise<string> {
  const to = join(c.scratch, `check-${device}-${rp}.img`);
  const r = await quiet(() =>
    restoreCommand({ safe: c.dir, device, rp: String(rp), to, encryptKeyFile: c.safe.keyFile, json: true }),
  );
  if (r.error !== undefined) return `restore fails: ${(r.error as Error).message}`;
  if (r.value !== EXIT.ok) return `restore exits ${r.value}`;
  const size = statSync(to).size;
  if (!expected || size !== expected.length) return `different bytes (restore gives ${size} bytes)`;
  const got = readFileSync(to);
  return got.equals(expected) ? 'exact' : 'different bytes';
}

function thrown(j: Judge, what: string, e: unknown): void {
  const v = judgeThrown(e);
  j.outcome(v.label);
  if (!v.ok) j.problem(`${what}: ${v.problem}`, true);
}

// ---------------------------------------------------------------------------------------- restore

async function feedRestore(c: Case, p: Params & { consumer: 'restore' }, j: Judge): Promise<void> {
  const to = join(c.scratch, `restored-${p.device}-${p.rp}.img`);
  const r = await quiet(() =>
    restoreCommand({
      safe: c.dir,
      device: p.device,
      rp: p.rp,
      to,
      encryptKeyFile: p.withKey ? c.safe.keyFile : undefined,
      allowDamaged: p.allowDamaged,
      json: true,
    }),
  );
  if (r.error !== undefined) return thrown(j, 'restore', r.error);
  j.outcome(`exit ${r.value}`);
  const out = lastJson<{ rp: number; damaged: { first: number; count: number; reason: string }[] }>(r.stdout);
  if (!out) return j.problem(`restore exited ${r.value} without its JSON result`);
  const expected = c.fx.images[out.rp]?.[p.device as 'd' | 'e'];
  if (!expected) return j.problem(`restore wrote RP ${out.rp}, which the pristine safe does not have`);
  // the size first: a forged device size may make a huge (sparse) file, never read whole here
  const size = statSync(to).size;
  if (size !== expected.length) {
    if (judged('different bytes', c, false) === 'rewrite') return j.outcome(REWRITE);
    return j.problem(`restore of RP ${out.rp} wrote ${size} bytes, the device has ${expected.length}`);
  }
  const got = readFileSync(to);
  const same = got.equals(expected);
  if (!same && r.value === EXIT.ok) {
    if (judged('different bytes', c, false) === 'rewrite') j.outcome(REWRITE);
    else j.problem(`restore of RP ${out.rp} device ${p.device} exited 0 with different bytes`);
  }
  if (r.value === EXIT.ok) return;
  if (r.value !== EXIT.damaged) return j.problem(`restore exited ${r.value}`);
  if (out.damaged.length === 0) j.problem('restore exited 8 naming no damaged range');
  const damaged = (b: number) => out.damaged.some((d) => b >= d.first && b < d.first + d.count);
  for (const d of out.damaged)
    if (unclear(d.reason)) j.problem(`restore: damage without a clear reason: ${d.reason}`, true);
  for (let b = 0; b * BS < expected.length; b++) {
    if (damaged(b) || c.applied.rewrites.size > 0) continue;
    if (!got.subarray(b * BS, (b + 1) * BS).equals(expected.subarray(b * BS, (b + 1) * BS))) {
      j.problem(`restore --allow-damaged of RP ${out.rp}: block ${b} is wrong but not reported damaged`);
      break;
    }
  }
}

// ----------------------------------------------------------------------------------------- backup

async function feedBackup(c: Case, _p: Params & { consumer: 'backup' }, j: Judge): Promise<void> {
  const r = await quiet(() =>
    backupCommand({
      safe: c.dir,
      device: DEVICES.map((id) => `${c.fx.nextDevices[id]}=${id}`),
      blockSize: '4k',
      segmentSize: '16k',
      workers: '1',
      stateDir: c.stateDir,
      json: true,
      encryptKeyFile: c.safe.keyFile,
    }),
  );
  if (r.error !== undefined) return thrown(j, 'backup', r.error);
  j.outcome(`exit ${r.value}`);
  const out = lastJson<{ rp: number }>(r.stdout);
  if (r.value !== EXIT.ok || !out) return j.problem(`backup exited ${r.value}: ${r.stdout.slice(0, 300)}`);
  const reader = readerOf(c.dir, c.keys);
  for (const id of DEVICES) {
    const verdict = await readsBack(reader, out.rp, id, c.fx.next[id], c.keys);
    // blocks it did not change are shared with the RPs before: damage there is inherited, and named
    const v = judged(verdict, c, true);
    if (v === 'rewrite') j.outcome(REWRITE);
    if (v === 'bad')
      j.problem(`backup committed RP ${out.rp}, whose device ${id} does not read back: ${verdict}`);
  }
}

// ---------------------------------------------------------------------------------------- compact

async function feedCompact(c: Case, p: Params & { consumer: 'compact' }, j: Judge): Promise<void> {
  // the RPs that read back exactly before: compaction may expire them (the policy), never break them
  const before = readerOf(c.dir, c.keys);
  const good: number[] = [];
  for (const rp of await before.listRps().catch(() => [] as number[])) {
    let all = true;
    for (const id of DEVICES)
      all &&= (await readsBack(before, rp, id, c.fx.images[rp]?.[id], c.keys)) === 'exact';
    if (all) good.push(rp);
  }
  const r = await quiet(() =>
    compactCommand({ safe: c.dir, stateDir: c.stateDir, grace: p.grace, json: true }),
  );
  if (r.error !== undefined) return thrown(j, 'compact', r.error);
  j.outcome(`exit ${r.value}`);
  if (r.value !== EXIT.ok) return j.problem(`compact exited ${r.value}`);
  const after = readerOf(c.dir, c.keys);
  const listed = await after.listRps().catch((e: Error) => {
    j.problem(`after compact, the safe's RPs cannot be listed: ${e.message}`);
    return [] as number[];
  });
  for (const rp of good) {
    if (!listed.includes(rp)) continue; // expired by the policy
    for (const id of DEVICES) {
      const verdict = await readsBack(after, rp, id, c.fx.images[rp]?.[id], c.keys);
      if (verdict !== 'exact')
        j.problem(`compact broke RP ${rp} device ${id}, which read back before: ${verdict}`);
    }
  }
}

// ------------------------------------------------------------------------------------------- run

const GRACE: Record<string, number> = { '2h': 2 * 3600_000, '0s': 0 };

/** Feeds the mutated copy to one consumer and judges the outcome, the safe's files and the reasons. */
export async function feed(c: Case, p: Params): Promise<Result> {
  const j = new Judge();
  const bytes = contents(c.dir);
  const before: Snapshot = snapshotOf(bytes);
  try {
    switch (p.consumer) {
      case 'index':
        await feedIndex(c, p, j);
        break;
      case 'verify':
        await feedVerify(c, p, j);
        break;
      case 'restore':
        await feedRestore(c, p, j);
        break;
      case 'backup':
        await feedBackup(c, p, j);
        break;
      case 'compact':
        await feedCompact(c, p, j);
        break;
    }
  } catch (e) {
    // the consumers catch everything themselves: this is the oracle's own reading failing
    j.problem(`the check itself failed: ${(e as Error).stack ?? e}`, true);
  }
  const due =
    p.consumer === 'compact' ? dueGarbage(bytes, GRACE[p.grace ?? '2h'] ?? 0, Date.now()) : new Set<string>();
  const { lost, excused } = losses(before, c.dir, (rel) => {
    if (rel.startsWith('locks/')) return staleLock(bytes.get(rel)!, c.heldLocks);
    if (due.has(rel)) return 'garbage past its grace period';
    return undefined;
  });
  for (const l of lost) j.problem(`${p.consumer} removed or changed ${l}`);
  return { outcomes: j.outcomes, problems: j.problems, excused, deletions: lost.length, crashes: j.crashes };
}
