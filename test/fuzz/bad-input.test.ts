/**
 * Bad input at scale (issue 15): small real safes, mutated (manifests, block maps, segments'
 * headers, frames, indexes and trailers, generations, journals and work objects, policy, locks,
 * damage records, safe.json), fed to the index Lambda's use case and to `verify`, `restore`,
 * `backup` and `compact`. Every input must be rejected or quarantined with a named reason, or
 * accepted only when the data reads back exactly; nothing may crash, nothing of the safe may be
 * deleted or changed (beyond what the lock and GC protocols allow), memory stays bounded.
 *
 *   FUZZ_SEED=<n>    the run's seed (default below); each input's own seed is printed on failure
 *   FUZZ_RUNS=<n>    inputs in all, shared by the consumers (default 1000; `npm run fuzz`: 10000)
 *   FUZZ_REPLAY=<consumer>:<input seed>   runs that one input and prints what it did
 *   FUZZ_TMPDIR=<dir>  where the safes are copied (default /dev/shm where there is one)
 *
 * A seed replays the same mutations of the same objects (picked by role, support/fixture.ts); the
 * fixture's random ids, salts and nonces differ between runs, so a byte offset inside a compressed
 * index may land on another bit.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CdpError } from '#core/errors.ts';
import {
  type Case,
  CONSUMERS,
  type Consumer,
  feed,
  type Params,
  paramsOf,
  REWRITE,
  type Result,
} from './support/consumers.ts';
import { buildFixture, copySafe, type Fixture, VARIANTS, type Variant } from './support/fixture.ts';
import { type Mutation, Mutator, mutations, safeStrings } from './support/mutations.ts';
import {
  contents,
  judgeThrown,
  keysOf,
  losses,
  RssMonitor,
  readerOf,
  readsBack,
  snapshotOf,
  staleLock,
} from './support/oracle.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 15_015);
const RUNS = Number(process.env.FUZZ_RUNS ?? 1000);
const REPLAY = process.env.FUZZ_REPLAY;
/**
 * Each consumer's share of the inputs. A restore or a backup starts worker threads (about 0.3 s
 * each on this 2-core machine), the index use case and verify take tens of milliseconds.
 */
const SHARE: Record<Consumer, number> = {
  index: 0.5,
  verify: 0.24,
  restore: 0.07,
  backup: 0.06,
  compact: 0.13,
};
const MEMORY_BOUND = 1024 ** 3;

if (!Number.isSafeInteger(SEED) || !Number.isSafeInteger(RUNS) || RUNS < 1)
  throw new Error(`FUZZ_SEED and FUZZ_RUNS must be whole numbers (got ${SEED}, ${RUNS})`);

interface Input {
  readonly variant: Variant;
  readonly muts: Mutation[];
  readonly params: Params;
}

interface Tally {
  inputs: number;
  crashes: number;
  deletions: number;
  excused: number;
  ms: number;
  readonly outcomes: Map<string, number>;
  /** The first input seed that had each outcome (to replay it). */
  readonly examples: Map<string, number>;
  readonly failures: string[];
}

let fx: Fixture;
let monitor: RssMonitor;
let heldLocks: Set<string>;
const tallies = new Map<Consumer, Tally>();
const ops = new Map<string, number>();
const wall = Date.now();

/** The seed of input `i` of a consumer: printed on failure, replayed with FUZZ_REPLAY. */
function inputSeed(consumer: Consumer, i: number): number {
  return createHash('sha256').update(`${SEED}:${consumer}:${i}`).digest().readUInt32LE(0) & 0x7fffffff;
}

function inputOf(consumer: Consumer, seed: number): Input {
  const { keys, ids } = safeStrings(fx.safes.plain);
  const arb = fc.record({
    variant: fc.constantFrom(...VARIANTS),
    muts: mutations(keys, ids),
    params: paramsOf(consumer),
  });
  return fc.sample(arb, { seed, numRuns: 1 })[0]!;
}

/** A case over a fresh copy of a pristine safe, with `muts` applied to it. */
function caseOf(variant: Variant, caseDir: string, state: 'kept' | 'lost', muts: readonly Mutation[]): Case {
  const safe = fx.safes[variant];
  const other = fx.safes[variant === 'plain' ? 'encrypted' : 'plain'];
  const { dir, stateDir } = copySafe(safe, caseDir, state);
  const m = new Mutator(dir, safe, other);
  for (const mut of muts) m.apply(mut);
  return { fx, safe, dir, stateDir, scratch: caseDir, applied: m.applied, keys: keysOf(safe), heldLocks };
}

/** An input that takes this long is a hang: reported (with its seed) like a crash, and the run goes on. */
const HANG_MS = 60_000;

async function withinBound(p: Promise<Result>): Promise<Result> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<Result>((resolve) => {
    timer = setTimeout(
      () =>
        resolve({
          outcomes: ['hang'],
          problems: [`did not finish within ${HANG_MS / 1000} s (a hang)`],
          excused: [],
          deletions: 0,
          crashes: 1,
        }),
      HANG_MS,
    );
  });
  try {
    return await Promise.race([p, hang]);
  } finally {
    clearTimeout(timer);
  }
}

async function runOne(
  consumer: Consumer,
  seed: number,
  verbose = false,
): Promise<Result & { notes: string[] }> {
  const input = inputOf(consumer, seed);
  const caseDir = mkdtempSync(join(fx.root, 'case-'));
  try {
    const state = input.params.consumer === 'backup' ? input.params.state : 'kept';
    const c = caseOf(input.variant, caseDir, state, input.muts);
    for (const m of input.muts) ops.set(m.op, (ops.get(m.op) ?? 0) + 1);
    const r = await withinBound(feed(c, input.params));
    monitor.sample();
    const notes = [`${input.variant} safe, ${JSON.stringify(input.params)}`, ...c.applied.notes];
    if (verbose)
      console.log(
        [
          ...notes,
          ...r.outcomes.map((o) => `outcome: ${o}`),
          ...r.excused.map((x) => `deleted by the protocol: ${x}`),
          ...r.problems,
        ].join('\n'),
      );
    return { ...r, notes };
  } finally {
    rmSync(caseDir, { recursive: true, force: true });
  }
}

function tally(consumer: Consumer): Tally {
  let t = tallies.get(consumer);
  if (!t) {
    t = {
      inputs: 0,
      crashes: 0,
      deletions: 0,
      excused: 0,
      ms: 0,
      outcomes: new Map(),
      examples: new Map(),
      failures: [],
    };
    tallies.set(consumer, t);
  }
  return t;
}

function report(): string {
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
  const inputs = [...tallies.values()].reduce((n, t) => n + t.inputs, 0);
  const lines = [
    `bad-input fuzz: seed ${SEED} (FUZZ_SEED), ${inputs} inputs (FUZZ_RUNS ${RUNS}), wall ${((Date.now() - wall) / 1000).toFixed(1)} s, ` +
      `RSS ${mib(monitor.start)} at start, peak ${mib(monitor.peak)} (+${mib(monitor.peak - monitor.start)}, bound +${mib(MEMORY_BOUND)})`,
    `  mutations: ${[...ops.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k} ${n}`)
      .join(', ')}`,
  ];
  for (const [consumer, t] of tallies) {
    const outcomes = [...t.outcomes.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k} ${n} (e.g. ${t.examples.get(k)})`);
    lines.push(
      `  ${consumer.padEnd(7)} ${String(t.inputs).padStart(5)} inputs in ${(t.ms / 1000).toFixed(1)} s: ` +
        `crashes ${t.crashes}, deletions ${t.deletions} (by the lock/GC protocol: ${t.excused}), failing inputs ${t.failures.length}; ` +
        `inputs with each outcome: ${outcomes.join(', ')}`,
    );
  }
  return lines.join('\n');
}

beforeAll(async () => {
  monitor = new RssMonitor();
  fx = await buildFixture();
  heldLocks = new Set(
    Object.values(fx.safes).flatMap((s) =>
      (s.byKind.get('lock') ?? []).map((o) => /([0-9a-f]{32})\.json$/.exec(o.rel)![1]!),
    ),
  );
}, 120_000);

afterAll(() => {
  monitor?.stop();
  if (tallies.size > 0) console.log(report());
  if (fx) rmSync(fx.root, { recursive: true, force: true });
});

/** The consumer's choices for the control run: every RP, the key, the state kept, the default grace. */
const CONTROL: Record<Consumer, Params> = {
  index: { consumer: 'index', order: 'ascending' },
  verify: { consumer: 'verify', withKey: true },
  restore: { consumer: 'restore', rp: 'latest', device: 'd', allowDamaged: false, withKey: true },
  backup: { consumer: 'backup', state: 'kept' },
  compact: { consumer: 'compact' },
};

if (REPLAY !== undefined) {
  describe('bad input: replay', () => {
    it(`replays ${REPLAY}`, async () => {
      const [consumer, seed] = REPLAY.split(':') as [Consumer, string];
      expect(CONSUMERS).toContain(consumer);
      const r = await runOne(consumer, Number(seed), true);
      expect(r.problems).toEqual([]);
    });
  });
} else {
  describe('bad input at scale', () => {
    it('the pristine safes pass every consumer (the oracles can say yes)', async () => {
      for (const variant of VARIANTS) {
        for (const consumer of CONSUMERS) {
          const caseDir = mkdtempSync(join(fx.root, 'control-'));
          try {
            const r = await feed(caseOf(variant, caseDir, 'kept', []), CONTROL[consumer]);
            expect(r.problems, `${variant} ${consumer}`).toEqual([]);
            expect(r.outcomes.length, `${variant} ${consumer}`).toBeGreaterThan(0);
            // RP 1 is merged away by the fixture's generation: the index may record it expired
            expect(
              r.outcomes.filter((o) => o !== 'committed' && o !== 'exit 0' && o !== 'expired'),
              `${variant} ${consumer}`,
            ).toEqual([]);
          } finally {
            rmSync(caseDir, { recursive: true, force: true });
          }
        }
      }
    }, 120_000);

    it('the oracles can say no: a deletion, a crash, an unclear reason, a damaged frame, a stale lock', async () => {
      const caseDir = mkdtempSync(join(fx.root, 'oracle-'));
      try {
        const c = caseOf('encrypted', caseDir, 'kept', []);
        const before = snapshotOf(contents(c.dir));
        const manifest = join(c.dir, 'rp', '0000000003.json');
        unlinkSync(manifest);
        expect(losses(before, c.dir, () => undefined).lost).toEqual(['rp/0000000003.json deleted']);
        expect(losses(before, c.dir, () => 'allowed').excused).toEqual(['rp/0000000003.json: allowed']);
        expect(judgeThrown(new TypeError("Cannot read properties of undefined (reading 'x')")).ok).toBe(
          false,
        );
        expect(judgeThrown(new CdpError('E_INTERNAL', 'something unexpected happened')).ok).toBe(false);
        expect(judgeThrown(new CdpError('E_SAFE_FORMAT', 'Cannot read properties of undefined')).ok).toBe(
          false,
        );
        expect(judgeThrown(new CdpError('E_SAFE_FORMAT', 'block map safes/fz/map/x.map is missing')).ok).toBe(
          true,
        );
        // a frame of the segment RP 4 wrote, damaged: its blocks read back corrupt, naming the segment
        const seg = c.safe.byKind.get('segment')!.find((o) => c.safe.uploadOf.get(o.rel) === 4)!;
        const bytes = readFileSync(join(c.dir, seg.rel));
        bytes[16 + 44 + 20]! ^= 0xff;
        writeFileSync(join(c.dir, seg.rel), bytes);
        const verdicts = await Promise.all(
          (['d', 'e'] as const).map((d) =>
            readsBack(readerOf(c.dir, c.keys), 4, d, fx.images[4]![d], c.keys),
          ),
        );
        expect(verdicts.filter((v) => v.startsWith('corrupt:'))).toHaveLength(1);
        // the fixture's lock is live (held here); the same lock of a process that is gone is stale
        const lock = c.safe.byKind.get('lock')![0]!;
        const record = JSON.parse(readFileSync(join(c.dir, lock.rel), 'utf8'));
        expect(staleLock(readFileSync(join(c.dir, lock.rel)), heldLocks)).toBeUndefined();
        expect(staleLock(Buffer.from(JSON.stringify({ ...record, pid: 2 ** 22 + 7 })), heldLocks)).toMatch(
          /stale/,
        );
      } finally {
        rmSync(caseDir, { recursive: true, force: true });
      }
    });

    for (const consumer of CONSUMERS) {
      const n = Math.max(1, Math.round(RUNS * SHARE[consumer]));
      it(
        `${consumer}: ${n} mutated safes, each rejected with a reason or read back exactly; no crash, no deletion`,
        async () => {
          const t = tally(consumer);
          const t0 = Date.now();
          for (let i = 0; i < n; i++) {
            const seed = inputSeed(consumer, i);
            const r = await runOne(consumer, seed);
            t.inputs++;
            t.crashes += r.crashes;
            t.deletions += r.deletions;
            t.excused += r.excused.length;
            for (const o of new Set(r.outcomes)) {
              t.outcomes.set(o, (t.outcomes.get(o) ?? 0) + 1);
              if (!t.examples.has(o)) t.examples.set(o, seed);
            }
            if (r.problems.length > 0)
              t.failures.push(
                `input ${i}, replay with FUZZ_REPLAY=${consumer}:${seed}\n    ${[...r.notes, ...r.problems].join('\n    ')}`,
              );
          }
          t.ms = Date.now() - t0;
          console.log(
            `${consumer}: seed ${SEED}, ${t.inputs} inputs, ${t.crashes} crashes, ${t.deletions} deletions, ` +
              `${t.failures.length} failing inputs, ${t.outcomes.get(REWRITE) ?? 0} undetectable rewrites accepted`,
          );
          expect(t.failures.slice(0, 20).join('\n')).toBe('');
          expect(t.crashes).toBe(0);
          expect(t.deletions).toBe(0);
        },
        Math.max(900_000, n * 2_000),
      ); // generous: 2 s an input (a restore takes 0.3 s here)
    }

    it('memory stayed bounded', () => {
      monitor.sample();
      expect(monitor.peak - monitor.start).toBeLessThan(MEMORY_BOUND);
    });
  });
}
