/**
 * Many writers (issue 15): 20 agents, each a separate `cdp-agent` process with its own safe, state
 * directory and device image, back up concurrently into one deployed stack while the RPO monitor and
 * the compaction schedule run and the queues are drained (ingest commits, compactions merge RPs on
 * the safes given a retention policy) as the backups go on. Then: every RP an agent reported
 * committed is committed in the catalog or expired by its safe's retention (never the newest),
 * nothing is quarantined, every retained RP restores byte for byte (straight from S3, a sample
 * through the restore function), and `cdp-agent verify` passes on every safe.
 *
 * The images and their changes come from a printed seed (MANY_AGENTS_SEED=<n> replays them); the
 * interleaving of the agents, compactions and ingest is whatever the machine makes of it. The
 * function logs are kept when MANY_AGENTS_KEEP is set (their folder is printed).
 *
 * A second case plays deterministically what that interleaving can produce: the index function
 * behind the bucket while a compaction merges RPs away, and an upload event delivered twice.
 */
import { createCipheriv, createHash, randomInt } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetFunctionConfigurationCommand, UpdateFunctionConfigurationCommand } from '@aws-sdk/client-lambda';
import { GetQueueAttributesCommand, GetQueueUrlCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoDbCatalog } from '#adapters/dynamodb-catalog.ts';
import { mapLimit } from '#core/concurrency.ts';
import type { RpRecord } from '#core/ports/catalog.ts';
import type { LagReport } from '#core/rpo.ts';
import { OUTPUTS } from '../../lib/offsite-stack.ts';
import { cloudEnv } from '../../scripts/localcloud/clients.ts';
import { type Deployment, deployLocal } from '../../scripts/localcloud/deploy.ts';
import type { BatchOutcome } from '../../scripts/localcloud/esm-runner.ts';
import type { InvokeServer } from '../../scripts/localcloud/invoke-server.ts';
import { type LocalFunctions, startLocalFunctions } from '../../scripts/localcloud/local-functions.ts';
import { agent, type CliResult } from '../support/agent-cli.ts';
import { useLocalCloud } from '../support/local-cloud.ts';
import { sha256 } from '../support/read-image.ts';

const cloud = useLocalCloud();
const SEED = process.env.MANY_AGENTS_SEED ? Number(process.env.MANY_AGENTS_SEED) : randomInt(2 ** 31);
const AGENTS = 20;
/** Backups per agent; the safes with a policy take one more (the last after a compaction of theirs). */
const BACKUPS = 3;
/** These safes get `policy --last 2` after their second backup: compaction merges RPs while they go on. */
const WITH_POLICY = new Set([2, 7, 12, 17]);
const KEEP_LAST = 2;
/**
 * The compaction schedule fires during the backups at most this often, and only once the previous
 * round's tasks are done (its real rate is 6 h; a round is one compact task per safe); the RPO
 * monitor runs at most this often (its real rate is 1 min).
 */
const COMPACTION_EVERY_MS = 15_000;
const MONITOR_EVERY_MS = 3_000;
const KiB = 1024;
const MiB = 1024 * KiB;

/** A deterministic byte stream (AES-256-CTR of zeros under a key from the seed and a name). */
class Rng {
  private readonly cipher;
  constructor(name: string) {
    const key = createHash('sha256').update(`${SEED}/${name}`).digest();
    this.cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  }
  bytes(n: number): Buffer {
    return this.cipher.update(Buffer.alloc(n));
  }
  /** 0 ≤ result < max */
  int(max: number): number {
    return this.bytes(4).readUInt32LE() % max;
  }
}

interface Agent {
  readonly n: number;
  readonly id: string;
  readonly safe: string;
  readonly dir: string;
  readonly dev: string;
  readonly stateDir: string;
  readonly keyFile?: string;
  readonly policy: boolean;
  readonly backups: number;
  readonly segmentSize: string;
  readonly rng: Rng;
  img: Buffer;
  /** rp → sha256 of the image it captured, for every backup that exited 0. */
  readonly committed: Map<number, string>;
  readonly failures: string[];
  readonly notes: string[];
  /** The catalog generation of the safe its last backup waited for (policy safes). */
  generationSeen: number;
  /** Wall time of each of its backups, ms. */
  readonly backupMs: number[];
}

/** Emits 'round' each time the test's loop has drained the queues. */
const drained = new EventEmitter();
let d: Deployment;
let fns: LocalFunctions;
let invoke: InvokeServer;
let catalog: DynamoDbCatalog;
let root: string;
let env: Record<string, string>;
let bucket: string;

beforeAll(async () => {
  console.log(`many-agents: seed ${SEED} (MANY_AGENTS_SEED=${SEED} replays the images and their changes)`);
  root = mkdtempSync(join(tmpdir(), 'many-agents-'));
  d = await deployLocal(cloud.profile, { outdir: cloud.outdir });
  // ingest queues a compaction of a safe once it has 3 RPs past its last one (24 by default), so
  // compactions also start the way they do in production, amid the backups
  const ingestFn = d.outputs[OUTPUTS.ingestFunction]!;
  const cfg = await cloud.clients.lambda.send(
    new GetFunctionConfigurationCommand({ FunctionName: ingestFn }),
  );
  await cloud.clients.lambda.send(
    new UpdateFunctionConfigurationCommand({
      FunctionName: ingestFn,
      Environment: {
        Variables: { ...cfg.Environment?.Variables, COMPACTION_CHAIN_THRESHOLD: String(BACKUPS) },
      },
    }),
  );
  fns = await startLocalFunctions(d, { logDir: join(root, 'function-logs') });
  catalog = new DynamoDbCatalog(DynamoDBDocumentClient.from(cloud.clients.ddb), d.outputs[OUTPUTS.table]!);
  invoke = await fns.serveInvoke();
  env = {
    ...cloudEnv(cloud.profile),
    AWS_ENDPOINT_URL_LAMBDA: invoke.endpoint,
    // some 150 agent processes start here: Node's compile cache spares each one compiling the agent again
    NODE_COMPILE_CACHE: join(root, 'node-compile-cache'),
  };
  bucket = d.outputs[OUTPUTS.bucket]!;
});
afterAll(async () => {
  await fns?.close();
  if (!root) return;
  if (process.env.MANY_AGENTS_KEEP) console.log(`many-agents: kept ${root}`);
  else rmSync(root, { recursive: true, force: true });
});

function makeAgent(n: number, id = `agent-${String(n).padStart(2, '0')}`): Agent {
  const dir = join(root, id);
  mkdirSync(dir, { recursive: true });
  const rng = new Rng(id);
  let keyFile: string | undefined;
  if (n % 2 === 1) {
    keyFile = join(dir, 'key');
    writeFileSync(keyFile, rng.bytes(32).toString('hex'));
  }
  // 1-2 MiB, not always a whole number of blocks; random data with a zero stretch
  const size = MiB + rng.int(MiB) + (n % 3 === 0 ? rng.int(64 * KiB) : 0);
  const img = rng.bytes(size);
  const zeroAt = rng.int(size - 128 * KiB);
  img.fill(0, zeroAt, zeroAt + 128 * KiB);
  return {
    n,
    id,
    safe: `s3://${bucket}/safes/${id}`,
    dir,
    dev: join(dir, 'disk.img'),
    stateDir: join(dir, 'state'),
    keyFile,
    policy: WITH_POLICY.has(n),
    backups: WITH_POLICY.has(n) ? BACKUPS + 1 : BACKUPS,
    segmentSize: n % 4 < 2 ? '256k' : '32M',
    rng,
    img,
    committed: new Map(),
    failures: [],
    notes: [],
    generationSeen: 0,
    backupMs: [],
  };
}

/** A few writes between backups: random data, zeros, or a copy of another region (dedup material). */
function changeSomeBlocks(a: Agent): void {
  const writes = 2 + a.rng.int(4);
  for (let w = 0; w < writes; w++) {
    const len = 1 + a.rng.int(96 * KiB);
    const off = a.rng.int(a.img.length - len);
    const kind = a.rng.int(5);
    if (kind === 0) a.img.fill(0, off, off + len);
    else if (kind === 1) {
      const from = a.rng.int(a.img.length - len);
      Buffer.from(a.img.subarray(from, from + len)).copy(a.img, off);
    } else a.rng.bytes(len).copy(a.img, off);
  }
}

const keyArgs = (a: Agent): string[] => (a.keyFile ? ['--encrypt-key-file', a.keyFile] : []);

function backupArgs(a: Agent): string[] {
  return [
    'backup',
    '--safe',
    a.safe,
    '--device',
    `${a.dev}=disk`,
    '--state-dir',
    a.stateDir,
    '--segment-size',
    a.segmentSize,
    '--workers',
    '1',
    ...keyArgs(a),
    '--json',
  ];
}

function restoreArgs(a: Agent, rp: number, to: string, remote: boolean): string[] {
  return [
    'restore',
    '--safe',
    a.safe,
    '--device',
    'disk',
    '--rp',
    String(rp),
    '--to',
    to,
    ...keyArgs(a),
    ...(remote ? ['--remote', d.outputs[OUTPUTS.restoreFunction]!] : []),
    '--json',
  ];
}

/** The functions' log lines (their "CloudWatch Logs") that warn or fail, for assertion messages. */
function functionTrouble(max = 40): string {
  const dir = join(root, 'function-logs');
  const lines = readdirSync(dir).flatMap((f) =>
    readFileSync(join(dir, f), 'utf8')
      .split('\n')
      .filter((l) => /"level":"(WARN|ERROR)"|waits for its parent/.test(l))
      .map((l) => `${f}: ${l.slice(0, 1500)}`),
  );
  return `${lines.length} warnings and errors in the function logs:\n${lines.slice(0, max).join('\n')}`;
}

const failed = (what: string, r: CliResult): string =>
  `${what}: exit ${r.code ?? r.signal}\n${r.stderr.trim()}\n${r.stdout.trim()}`.slice(0, 4000);

/** Polls the catalog until compaction has recorded a generation of the safe (while the others back up). */
async function waitForGeneration(a: Agent): Promise<boolean> {
  const by = performance.now() + 120_000;
  while (performance.now() < by) {
    a.generationSeen = (await catalog.getSafe(a.id))?.generation ?? 0;
    if (a.generationSeen > 0) return true;
    await once(drained, 'round'); // the queues were drained again: the catalog may have moved
  }
  return false;
}

/**
 * One agent's life: its backups, a few blocks changed before each later one. A safe with a
 * policy gets it after its second backup, and takes its last backup once a compaction has merged
 * RPs of the safe, so compaction and this safe's backups surely interleave.
 */
async function runAgent(a: Agent): Promise<void> {
  try {
    for (let i = 1; i <= a.backups; i++) {
      if (i > 1) changeSomeBlocks(a);
      if (a.policy && i === a.backups && !(await waitForGeneration(a))) {
        a.failures.push(`${a.id}: no compaction of the safe was recorded within 120 s of its third RP`);
        return;
      }
      writeFileSync(a.dev, a.img);
      const hash = sha256(a.img);
      const t = performance.now();
      const r = await agent(backupArgs(a), env);
      a.backupMs.push(performance.now() - t);
      if (r.code !== 0) {
        a.failures.push(failed(`${a.id} backup ${i}`, r));
        return;
      }
      let out: { rp: number; parent: number | null; notes: string[] };
      try {
        out = JSON.parse(r.stdout);
      } catch {
        a.failures.push(failed(`${a.id} backup ${i}: exit 0 without its JSON result`, r));
        return;
      }
      if (a.committed.has(out.rp)) a.failures.push(`${a.id}: RP ${out.rp} reported committed twice`);
      a.committed.set(out.rp, hash);
      a.notes.push(...out.notes);
      if (a.policy && i === 2) {
        const p = await agent(['policy', '--safe', a.safe, '--last', String(KEEP_LAST), '--json'], env);
        if (p.code !== 0) {
          a.failures.push(failed(`${a.id} policy`, p));
          return;
        }
      }
    }
  } catch (e) {
    a.failures.push(`${a.id}: ${(e as Error).stack}`);
  }
}

const scheduledEvent = (): Record<string, unknown> => ({
  version: '0',
  id: crypto.randomUUID(),
  'detail-type': 'Scheduled Event',
  source: 'aws.events',
  time: new Date().toISOString(),
  region: cloud.profile.region,
  detail: {},
});

/** Visible and in-flight messages of a queue and of its dead-letter queue. */
async function queueDepth(url: string): Promise<{ visible: number; inFlight: number; dead: number }> {
  const a = await cloud.clients.sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: url,
      AttributeNames: [
        'ApproximateNumberOfMessages',
        'ApproximateNumberOfMessagesNotVisible',
        'RedrivePolicy',
      ],
    }),
  );
  const at = a.Attributes ?? {};
  let dead = 0;
  if (at.RedrivePolicy) {
    const arn = (JSON.parse(at.RedrivePolicy) as { deadLetterTargetArn: string }).deadLetterTargetArn;
    const dlq = await cloud.clients.sqs.send(new GetQueueUrlCommand({ QueueName: arn.split(':').pop()! }));
    const b = await cloud.clients.sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: dlq.QueueUrl!,
        AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
      }),
    );
    dead =
      Number(b.Attributes?.ApproximateNumberOfMessages ?? 0) +
      Number(b.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0);
  }
  return {
    visible: Number(at.ApproximateNumberOfMessages ?? 0),
    inFlight: Number(at.ApproximateNumberOfMessagesNotVisible ?? 0),
    dead,
  };
}

describe('many writers', () => {
  it(`${AGENTS} concurrent agents: nothing lost, nothing wrongly quarantined, every retained RP restores`, async () => {
    const t0 = performance.now();
    const agents = Array.from({ length: AGENTS }, (_, i) => makeAgent(i + 1));
    const compactionFn = d.outputs[OUTPUTS.compactionFunction]!;
    const monitorFn = d.outputs[OUTPUTS.monitorFunction]!;
    const ingestUrl = d.outputs[OUTPUTS.queueUrl]!;
    const compactionUrl = d.outputs[OUTPUTS.compactionQueueUrl]!;
    const batches: BatchOutcome[] = [];
    const stats = { monitorRuns: 0, compactionRounds: 0, maxSafesMonitored: 0 };
    const breaches: LagReport[] = [];

    // the agents, all at once: each one's backups are one chain of processes
    let running = true;
    const chains = Promise.all(agents.map(runAgent)).finally(() => (running = false));

    // meanwhile: the RPO monitor, the compaction schedule, and the queues drained a few batches at
    // a time, so ingest and compaction tasks run while the agents write
    let lastRound = Number.NEGATIVE_INFINITY;
    let lastMonitor = Number.NEGATIVE_INFINITY;
    let loopError: unknown;
    let idle = false;
    try {
      while (running) {
        if (performance.now() - lastMonitor >= MONITOR_EVERY_MS) {
          lastMonitor = performance.now();
          const lag = (await fns.invoke(monitorFn, scheduledEvent())) as LagReport;
          stats.monitorRuns++;
          stats.maxSafesMonitored = Math.max(stats.maxSafesMonitored, lag.safes.length);
          if (lag.breaches > 0) breaches.push(lag);
        }
        if (performance.now() - lastRound >= COMPACTION_EVERY_MS) {
          const q = await queueDepth(compactionUrl);
          if (q.visible + q.inFlight === 0) {
            lastRound = performance.now();
            await fns.invoke(compactionFn, scheduledEvent());
            stats.compactionRounds++;
          }
        }
        // idle last time: long-poll until the agents' uploads send something
        const b = await fns.drain(3, idle ? 1 : 0);
        idle = b.length === 0;
        batches.push(...b);
        drained.emit('round');
      }
    } catch (e) {
      loopError = e;
    }
    await chains;
    if (loopError) throw loopError;
    const backupsSeconds = (performance.now() - t0) / 1000;
    const failures = agents.flatMap((a) => a.failures);
    expect(failures, failures.join('\n\n')).toEqual([]);
    expect(breaches, 'no safe past its RPO while the agents write').toEqual([]);

    // one more compaction round now that every backup is done; then the queues settle
    const last = (await fns.invoke(compactionFn, scheduledEvent())) as { safes: number };
    expect(last.safes).toBe(AGENTS);
    const tSettle = performance.now();
    let depth: Record<string, Awaited<ReturnType<typeof queueDepth>>>;
    for (;;) {
      batches.push(...(await fns.drain()));
      depth = { ingest: await queueDepth(ingestUrl), compaction: await queueDepth(compactionUrl) };
      const idle = Object.values(depth).every((q) => q.visible === 0 && q.inFlight === 0);
      if (idle || performance.now() - tSettle > 120_000) break;
    }

    // the catalog: every reported RP committed, or expired by retention on a safe with a policy
    const reported = agents.reduce((n, a) => n + a.committed.size, 0);
    let committedInCatalog = 0;
    let expired = 0;
    const lost: string[] = [];
    const unreported: string[] = [];
    const retained = new Map<Agent, number[]>();
    const safes = new Map<string, unknown>();
    for (const a of agents) {
      const rows = new Map<number, RpRecord>((await catalog.listRps(a.id)).map((r) => [r.rp, r]));
      const newest = Math.max(...a.committed.keys());
      const keep: number[] = [];
      for (const rp of a.committed.keys()) {
        const row = rows.get(rp);
        if (row?.state === 'committed') {
          committedInCatalog++;
          keep.push(rp);
        } else if (row?.state === 'expired' && a.policy && rp !== newest) expired++;
        else
          lost.push(`${a.id} RP ${rp}: ${row ? `${row.state} ${row.reason ?? ''}` : 'not in the catalog'}`);
      }
      for (const rp of rows.keys()) if (!a.committed.has(rp)) unreported.push(`${a.id} RP ${rp}`);
      retained.set(a, keep);
      safes.set(a.id, await catalog.getSafe(a.id));
    }
    const quarantined = await catalog.listQuarantined();
    const backupMs = agents.flatMap((a) => a.backupMs);
    const summary = (): string =>
      `many-agents: seed ${SEED}; ${AGENTS} concurrent agents (${lost.length} lost RPs): ` +
      `${reported} RPs reported committed, ${committedInCatalog} committed in the catalog, ` +
      `${expired} expired by retention, lost ${lost.length}, quarantined ${quarantined.length}; ` +
      `during the backups ${stats.monitorRuns} RPO monitor runs and ${stats.compactionRounds} compaction rounds ` +
      `(${agents.filter((a) => a.generationSeen > 0).length} of ${WITH_POLICY.size} policy safes compacted between their backups); ` +
      `${batches.length} queue batches, ${batches.reduce((n, b) => n + b.retried, 0)} records retried; ` +
      `backups ${backupsSeconds.toFixed(1)} s (one backup ${(backupMs.reduce((x, y) => x + y, 0) / backupMs.length / 1000).toFixed(1)} s on average)`;
    console.log(summary());
    const trouble = lost.length + quarantined.length > 0 ? functionTrouble() : '';
    expect(lost, `${lost.join('\n')}\n${trouble}`).toEqual([]);
    expect(quarantined, `${JSON.stringify(quarantined, null, 1)}\n${trouble}`).toEqual([]);
    expect(unreported, 'RPs in the catalog that no agent reported').toEqual([]);
    expect(committedInCatalog + expired).toBe(reported);
    expect(depth, `queues drained, nothing dead-lettered; ${functionTrouble()}`).toEqual({
      ingest: { visible: 0, inFlight: 0, dead: 0 },
      compaction: { visible: 0, inFlight: 0, dead: 0 },
    });
    const failedBatches = batches.filter((b) => b.error);
    expect(failedBatches, JSON.stringify(failedBatches)).toEqual([]);
    for (const a of agents) {
      const newest = Math.max(...a.committed.keys());
      expect([...a.committed.keys()], a.id).toEqual(Array.from({ length: a.backups }, (_, i) => i + 1));
      expect(safes.get(a.id), a.id).toMatchObject({
        newestRp: newest,
        committedRps: retained.get(a)!.length,
        quarantined: 0,
      });
      // every backup done, the last compaction leaves exactly what the policy keeps
      expect(retained.get(a), a.id).toEqual(
        a.policy
          ? Array.from({ length: KEEP_LAST }, (_, i) => newest - KEEP_LAST + 1 + i)
          : Array.from({ length: a.backups }, (_, i) => i + 1),
      );
    }
    expect(expired).toBe(WITH_POLICY.size * (BACKUPS + 1 - KEEP_LAST));
    expect(stats.maxSafesMonitored).toBe(AGENTS);
    const lagAfter = (await fns.invoke(monitorFn, scheduledEvent())) as LagReport;
    expect(lagAfter.breaches).toBe(0);
    expect(
      Object.fromEntries(lagAfter.safes.map((s) => [s.safe, s.newestRp])),
      'the RPO monitor sees every safe at its newest RP',
    ).toEqual(Object.fromEntries(agents.map((a) => [a.id, Math.max(...a.committed.keys())])));

    // every retained RP restores byte for byte straight from S3; verify passes on every safe
    const tChecks = performance.now();
    const jobs = agents.flatMap((a) => retained.get(a)!.map((rp) => ({ a, rp })));
    await mapLimit(jobs, 4, async ({ a, rp }) => {
      const to = join(a.dir, `rp${rp}.img`);
      const r = await agent(restoreArgs(a, rp, to, false), env);
      expect(r.code, failed(`${a.id} restore RP ${rp}`, r)).toBe(0);
      expect(sha256(readFileSync(to)), `${a.id} RP ${rp}`).toBe(a.committed.get(rp));
      rmSync(to);
    });
    await mapLimit(agents, 4, async (a) => {
      const r = await agent(['verify', '--safe', a.safe, ...keyArgs(a), '--json'], env);
      expect(r.code, failed(`${a.id} verify`, r)).toBe(0);
      const v = JSON.parse(r.stdout) as { ok: boolean; results: { rp: number }[] };
      expect(v.ok).toBe(true);
      expect(
        v.results.map((x) => x.rp),
        `${a.id}: verify checks every retained RP`,
      ).toEqual(retained.get(a));
    });
    // a sample through the restore function: the newest RP of each policy safe, the oldest of two others
    const sample = [
      ...agents.filter((a) => a.policy).map((a) => ({ a, rp: Math.max(...retained.get(a)!) })),
      ...[agents[0]!, agents[AGENTS - 1]!].map((a) => ({ a, rp: Math.min(...retained.get(a)!) })),
    ];
    for (const { a, rp } of sample) {
      const to = join(a.dir, `remote${rp}.img`);
      const r = await agent(restoreArgs(a, rp, to, true), env);
      expect(r.code, failed(`${a.id} remote restore RP ${rp}`, r)).toBe(0);
      expect(sha256(readFileSync(to)), `${a.id} RP ${rp} through the restore function`).toBe(
        a.committed.get(rp),
      );
      rmSync(to);
    }
    // and an RP retention merged away is refused by name
    const p = agents.find((a) => a.policy)!;
    const gone = await agent(restoreArgs(p, 1, join(p.dir, 'gone.img'), true), env);
    expect(gone.code).toBe(7);
    expect(gone.stderr).toMatch(/recovery point 1 .*expired/);

    const notes = agents.flatMap((a) => a.notes.map((n) => `${a.id}: ${n}`));
    if (notes.length > 0) console.log(`many-agents: notes from the agents:\n${notes.join('\n')}`);
    console.log(
      `${summary()}; ${jobs.length} restores from S3, ${sample.length} through the restore function and ` +
        `${AGENTS} verifies, all byte for byte, in ${((performance.now() - tChecks) / 1000).toFixed(1)} s; ` +
        `wall ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
  }, 420_000);

  // What the race above can do, made deterministic: the index function falls behind the bucket
  // (backups land, nothing is indexed yet), a compaction merges RPs away meanwhile, and an event is
  // delivered twice. Retained RPs commit although their parent is gone; merged ones are recorded
  // expired, never waiting nor committed again.
  it('an ingest backlog behind a compaction: retained RPs commit, merged ones are recorded expired', async () => {
    const id = 'late-index';
    const a = makeAgent(AGENTS + 1, id);
    const backup = async (): Promise<number> => {
      if (a.committed.size > 0) changeSomeBlocks(a);
      writeFileSync(a.dev, a.img);
      const r = await agent(backupArgs(a), env);
      expect(r.code, failed('backup', r)).toBe(0);
      const rp = (JSON.parse(r.stdout) as { rp: number }).rp;
      a.committed.set(rp, sha256(a.img));
      return rp;
    };
    await backup();
    await fns.drain();
    expect((await catalog.getRp(id, 1))?.state).toBe('committed');
    const p = await agent(['policy', '--safe', a.safe, '--last', String(KEEP_LAST), '--json'], env);
    expect(p.code, failed('policy', p)).toBe(0);
    for (let i = 0; i < 3; i++) await backup(); // RPs 2, 3, 4 land; the index function is behind
    // the compaction task runs before them: it keeps 3 and 4, merges 1 (committed) and 2 (not indexed)
    const compactionUrl = d.outputs[OUTPUTS.compactionQueueUrl]!;
    await cloud.clients.sqs.send(
      new SendMessageCommand({
        QueueUrl: compactionUrl,
        MessageBody: JSON.stringify({ action: 'compact', safe: id }),
      }),
    );
    const compactionPoller = fns.pollers[d.mappings.findIndex((m) => m.queueUrl === compactionUrl)]!;
    expect(await compactionPoller.pollOnce(5)).toMatchObject({ received: 1, deleted: 1 });
    expect(await catalog.getSafe(id)).toMatchObject({ generation: 1, compactedUpTo: 4 });
    expect((await catalog.listRps(id)).map((r) => [r.rp, r.state])).toEqual([[1, 'expired']]);
    // RP 1's upload event delivered once more (S3 and EventBridge deliver at least once)
    await cloud.clients.sqs.send(
      new SendMessageCommand({
        QueueUrl: d.outputs[OUTPUTS.queueUrl]!,
        MessageBody: JSON.stringify({
          source: 'aws.s3',
          'detail-type': 'Object Created',
          time: new Date().toISOString(),
          detail: { bucket: { name: bucket }, object: { key: `safes/${id}/rp/0000000001.json`, size: 1 } },
        }),
      }),
    );
    const batches = await fns.drain();
    expect(
      batches.filter((b) => b.error || b.retried > 0),
      functionTrouble(),
    ).toEqual([]);
    expect((await catalog.listRps(id)).map((r) => [r.rp, r.state])).toEqual([
      [1, 'expired'],
      [2, 'expired'],
      [3, 'committed'],
      [4, 'committed'],
    ]);
    expect(await catalog.getSafe(id)).toMatchObject({ newestRp: 4, committedRps: 2, quarantined: 0 });
    expect(await catalog.listQuarantined(id)).toEqual([]);
    // the retained RPs restore through the restore function, byte for byte; a merged one is refused
    for (const rp of [3, 4]) {
      const to = join(a.dir, `remote${rp}.img`);
      const r = await agent(restoreArgs(a, rp, to, true), env);
      expect(r.code, failed(`remote restore RP ${rp}`, r)).toBe(0);
      expect(sha256(readFileSync(to)), `RP ${rp}`).toBe(a.committed.get(rp));
    }
    const gone = await agent(restoreArgs(a, 2, join(a.dir, 'gone.img'), true), env);
    expect(gone.code).toBe(7);
    expect(gone.stderr).toMatch(/recovery point 2 .*expired/);
  }, 180_000);
});
