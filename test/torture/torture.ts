/**
 * The torture suite (issue 15): random, seeded interleavings of every process that writes a safe,
 * overlapping and killed with SIGKILL at random moments, then run again; after every step every
 * recovery point any command reported committed restores byte for byte (or was merged away by
 * retention), and at the end, after garbage collection, nothing is unreferenced and nothing
 * referenced is missing.
 *
 * The world: one device image that changes between steps (new data, zeros, and old content coming
 * back, so backups deduplicate against segments compaction has retired); a primary directory safe
 * that backups write; an offsite S3 safe in the deployed stack's bucket that replication fills.
 * Actors, each the real thing in a process of its own: `cdp-agent backup` (sometimes two of the same
 * device at once, sometimes slowed by --bwlimit), `replicate` to S3, `compact --grace 0s` onsite on
 * either safe, the compaction function (its deployed bundle, one invocation running every stage
 * inline, garbage grace 0), `restore` and `verify` of either safe. Retention keeps the last 3 RPs
 * onsite and the last 4 offsite.
 */

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { S3Client } from '@aws-sdk/client-s3';
import { FsObjectStore } from '#adapters/fs-store.ts';
import { S3ObjectStore } from '#adapters/s3-store.ts';
import { referencedKeys } from '#core/compaction/collect-garbage.ts';
import { parseKey, safePrefix } from '#core/keys.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import { SafeReader } from '#core/safe-reader.ts';
import { OUTPUTS } from '../../lib/offsite-stack.ts';
import { cloudEnv } from '../../scripts/localcloud/clients.ts';
import type { Deployment } from '../../scripts/localcloud/deploy.ts';
import type { LocalFunctions } from '../../scripts/localcloud/local-functions.ts';
import type { CloudProfile } from '../../scripts/localcloud/profile.ts';
import { type CliResult, startAgent } from '../support/agent-cli.ts';

const MiB = 1024 * 1024;
const BLOCK = 64 * 1024;
const DEVICE_BYTES = 6 * MiB;
const SAFE = 'tortured';

export interface TortureCloud {
  readonly profile: CloudProfile;
  readonly d: Deployment;
  readonly fns: LocalFunctions;
  readonly s3: S3Client;
}

export interface TortureConfig {
  readonly seed: number;
  /** Steps to run (each: one to three actors at once, then the checks). */
  readonly steps: number;
  /** Stop starting steps after this many milliseconds (the checks of the last one still run). */
  readonly deadlineMs?: number;
  /** Chance that an actor is killed with SIGKILL at a random moment. */
  readonly killRate: number;
  readonly root: string;
  readonly cloud: TortureCloud;
  readonly log?: (line: string) => void;
}

export interface TortureStats {
  readonly seed: number;
  steps: number;
  readonly ops: Record<string, number>;
  /** SIGKILLs delivered to a process that was still running, per actor. */
  readonly kills: Record<string, number>;
  committed: number;
  /** Steps that ran two backups of the same device at once. */
  sameDeviceBackups: number;
  expired: number;
  replicated: number;
  imagesChecked: number;
  readonly failures: string[];
  orphans: number;
  missing: number;
}

/** A small, seeded PRNG (mulberry32): every choice of a run follows from its seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

interface Running {
  readonly kind: string;
  readonly done: Promise<CliResult>;
  kill(): boolean;
  /** For backups: the snapshot's image hash. */
  readonly image?: string;
}

/** Runs `script` (a compaction invocation) as a child process with a spec file. */
function invokeOnce(root: string, spec: unknown, n: number): { done: Promise<CliResult>; kill(): boolean } {
  const file = join(root, `invoke-${n}.json`);
  writeFileSync(file, JSON.stringify(spec));
  const script = fileURLToPath(new URL('../../scripts/localcloud/invoke-once.ts', import.meta.url));
  const child = spawn(process.execPath, [script, file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<CliResult>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  return { done, kill: () => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL') };
}

export class Torture {
  private readonly c: TortureConfig;
  private readonly random: () => number;
  readonly stats: TortureStats;
  private readonly dev: string;
  private img: Buffer;
  private readonly snapshots: Buffer[] = [];
  private readonly dir: string;
  private readonly state: string;
  private readonly s3url: string;
  private readonly env: Record<string, string>;
  /** RP → image hash, as the backup that committed it reported. */
  private readonly expected = new Map<number, string>();
  /** Image hashes of backups that were killed (one of them may have committed silently). */
  private readonly unreported = new Set<string>();
  private n = 0;
  readonly dirStore: ObjectStore;
  readonly s3Store: ObjectStore;

  constructor(c: TortureConfig) {
    this.c = c;
    this.random = rng(c.seed);
    this.stats = {
      seed: c.seed,
      steps: 0,
      ops: {},
      kills: {},
      committed: 0,
      sameDeviceBackups: 0,
      expired: 0,
      replicated: 0,
      imagesChecked: 0,
      failures: [],
      orphans: 0,
      missing: 0,
    };
    mkdirSync(join(c.root, 'snaps'), { recursive: true });
    this.dev = join(c.root, 'device.img');
    this.img = Buffer.alloc(DEVICE_BYTES);
    this.fill(0, DEVICE_BYTES);
    this.img.fill(0, 4 * MiB, 5 * MiB);
    this.dir = join(c.root, SAFE);
    this.state = join(c.root, 'state');
    const bucket = c.cloud.d.outputs[OUTPUTS.bucket]!;
    this.s3url = `s3://${bucket}/safes/${SAFE}`;
    this.env = cloudEnv(c.cloud.profile);
    this.dirStore = new FsObjectStore(this.dir, SAFE);
    this.s3Store = new S3ObjectStore(c.cloud.s3, bucket, `safes/${SAFE}`, SAFE);
  }

  private log(line: string): void {
    this.c.log?.(line);
  }

  private pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.random() * xs.length)]!;
  }

  /** Seeded bytes into the image. */
  private fill(at: number, length: number): void {
    for (let o = 0; o < length; o += 32) {
      const h = createHash('sha256')
        .update(`${this.c.seed}:${this.n}:${at + o}`)
        .digest();
      h.copy(this.img, at + o, 0, Math.min(32, length - o));
    }
  }

  /** Between steps the device changes: new data, zeros, or content an older snapshot had. */
  private mutate(): void {
    this.n++;
    const writes = 1 + Math.floor(this.random() * 3);
    for (let i = 0; i < writes; i++) {
      const at = Math.floor(this.random() * (DEVICE_BYTES / BLOCK)) * BLOCK;
      const length = Math.min(DEVICE_BYTES - at, (1 + Math.floor(this.random() * 8)) * BLOCK);
      const what = this.random();
      if (what < 0.5) this.fill(at, length);
      else if (what < 0.65) this.img.fill(0, at, at + length);
      else if (this.snapshots.length > 0) this.pick(this.snapshots).copy(this.img, at, at, at + length);
      else this.fill(at, length);
    }
    writeFileSync(this.dev, this.img);
  }

  private agent(kind: string, args: string[], image?: string): Running {
    const a = startAgent(args, this.env);
    return {
      kind,
      done: a.done,
      image,
      kill: () => a.child.exitCode === null && a.child.signalCode === null && a.child.kill('SIGKILL'),
    };
  }

  private backup(): Running {
    const snap = join(this.c.root, 'snaps', `${this.n}-${Math.floor(this.random() * 1e9)}.img`);
    copyFileSync(this.dev, snap);
    this.snapshots.push(Buffer.from(this.img));
    if (this.snapshots.length > 8) this.snapshots.shift();
    const slow = this.random() < 0.5 ? ['--bwlimit', this.pick(['2M', '4M', '8M'])] : [];
    return this.agent(
      'backup',
      [
        'backup',
        '--safe',
        this.dir,
        '--device',
        `${snap}=disk`,
        '--state-dir',
        this.state,
        '--segment-size',
        '1M',
        '--json',
        ...slow,
      ],
      sha(this.img),
    );
  }

  private compactionFunction(): Running {
    const fnName = this.c.cloud.d.outputs[OUTPUTS.compactionFunction]!;
    const host = [...this.c.cloud.fns.hosts.values()].find((h) => h.spec.functionName === fnName)!;
    const r = invokeOnce(
      this.c.root,
      {
        bundleDir: host.spec.bundleDir,
        handler: host.spec.handler,
        env: { ...host.spec.env, GRACE_SECONDS: '0', INLINE_UNITS: '100000' },
        functionName: fnName,
        timeoutSeconds: host.spec.timeoutSeconds,
        event: {
          Records: [
            {
              messageId: `torture-${this.n}`,
              receiptHandle: 'r',
              body: JSON.stringify({ action: 'compact', safe: SAFE }),
              attributes: {},
              messageAttributes: {},
              md5OfBody: '',
              eventSource: 'aws:sqs',
              eventSourceARN: 'arn:aws:sqs:us-east-1:000000000000:torture',
              awsRegion: 'us-east-1',
            },
          ],
        },
      },
      this.n * 1000 + Math.floor(this.random() * 1000),
    );
    return { kind: 'compaction function', ...r };
  }

  private async listed(store: ObjectStore): Promise<number[]> {
    return new SafeReader(store, SAFE).listRps().catch(() => []);
  }

  private async restoreOne(which: 'dir' | 's3'): Promise<Running> {
    const rps = await this.listed(which === 'dir' ? this.dirStore : this.s3Store);
    const rp = rps.length > 0 ? this.pick(rps) : 1;
    const to = join(this.c.root, `restore-${this.n}-${Math.floor(this.random() * 1e9)}.img`);
    const r = this.agent(`restore ${which}`, [
      'restore',
      '--safe',
      which === 'dir' ? this.dir : this.s3url,
      '--device',
      'disk',
      '--rp',
      String(rp),
      '--to',
      to,
      '--json',
    ]);
    return {
      ...r,
      done: r.done.then((x) => ({
        ...x,
        stdout: `${x.stdout}\n${JSON.stringify({ restoredRp: rp, file: to })}`,
      })),
    };
  }

  private async actor(kind: string): Promise<Running> {
    switch (kind) {
      case 'backup':
        return this.backup();
      case 'replicate':
        return this.agent('replicate', ['replicate', '--from', this.dir, '--to', this.s3url, '--json']);
      case 'compact dir':
        return this.agent('compact dir', ['compact', '--safe', this.dir, '--grace', '0s', '--json']);
      case 'compact s3':
        return this.agent('compact s3', ['compact', '--safe', this.s3url, '--grace', '0s', '--json']);
      case 'compaction function':
        return this.compactionFunction();
      case 'restore dir':
        return this.restoreOne('dir');
      case 'restore s3':
        return this.restoreOne('s3');
      case 'verify dir':
        return this.agent('verify dir', ['verify', '--safe', this.dir, '--json']);
      default:
        return this.agent('verify s3', ['verify', '--safe', this.s3url, '--json']);
    }
  }

  private fail(msg: string): void {
    this.stats.failures.push(`seed ${this.c.seed} step ${this.stats.steps}: ${msg}`);
    this.log(`FAILURE ${msg}`);
  }

  /** What an actor's exit may be: killed, or a success, or the conflicts the protocol allows. */
  private outcome(r: Running, res: CliResult, killed: boolean): void {
    this.stats.ops[r.kind] = (this.stats.ops[r.kind] ?? 0) + 1;
    if (killed && res.signal === 'SIGKILL') {
      this.stats.kills[r.kind] = (this.stats.kills[r.kind] ?? 0) + 1;
      if (r.kind === 'backup' && r.image) this.unreported.add(r.image);
      return;
    }
    const out = res.stdout.trim().split('\n');
    const json = (i = 0): Record<string, unknown> | undefined => {
      try {
        return JSON.parse(out.length > 1 && i < 0 ? out[out.length + i]! : res.stdout) as Record<
          string,
          unknown
        >;
      } catch {
        return undefined;
      }
    };
    const conflict = res.code === 5; // another writer or compactor held the lock: run again
    if (r.kind === 'backup') {
      if (res.code === 0) {
        const rp = json()?.rp as number;
        const had = this.expected.get(rp);
        if (had !== undefined && had !== r.image)
          this.fail(`RP ${rp} reported committed twice, with other content`);
        this.expected.set(rp, r.image!);
        this.stats.committed++;
      } else if (!conflict) this.fail(`backup exited ${res.code}: ${res.stderr.slice(0, 400)}`);
      return;
    }
    if (r.kind === 'replicate') {
      if (res.code === 0)
        this.stats.replicated += (json()?.results as { copiedRps?: number[] }[])?.[0]?.copiedRps?.length ?? 0;
      else if (!conflict)
        this.fail(`replicate exited ${res.code}: ${(res.stdout + res.stderr).slice(0, 400)}`);
      return;
    }
    if (r.kind.startsWith('restore')) {
      const meta = JSON.parse(out[out.length - 1]!) as { restoredRp: number; file: string };
      if (res.code === 0) {
        const want = this.expected.get(meta.restoredRp);
        const got = sha(readFileSync(meta.file));
        if (want !== undefined && got !== want)
          this.fail(`${r.kind} of RP ${meta.restoredRp} restored other bytes`);
        if (want === undefined && !this.unreported.has(got))
          this.fail(`${r.kind} of RP ${meta.restoredRp}: bytes of no backup`);
      } else if (!(res.code === 4 && /expired|not found/.test(res.stderr)))
        this.fail(`${r.kind} of RP ${meta.restoredRp} exited ${res.code}: ${res.stderr.slice(0, 400)}`);
      return;
    }
    if (r.kind.startsWith('verify')) {
      if (res.code !== 0)
        this.fail(`${r.kind} exited ${res.code}: ${(res.stdout + res.stderr).slice(0, 600)}`);
      return;
    }
    // compactions
    if (res.code !== 0 && !conflict)
      this.fail(`${r.kind} exited ${res.code}: ${(res.stdout + res.stderr).slice(0, 400)}`);
  }

  /** One step: one to three actors at once, some killed at a random moment. */
  async step(): Promise<void> {
    const weights: [string, number][] = [
      ['backup', 5],
      ['replicate', 3],
      ['compact dir', 2],
      ['compact s3', 1],
      ['compaction function', 2],
      ['restore dir', 1],
      ['restore s3', 1],
      ['verify dir', 1],
      ['verify s3', 1],
    ];
    const total = weights.reduce((n, [, w]) => n + w, 0);
    const choose = (): string => {
      let x = this.random() * total;
      for (const [k, w] of weights) {
        x -= w;
        if (x < 0) return k;
      }
      return 'backup';
    };
    const count = 1 + Math.floor(this.random() * 3);
    const kinds = Array.from({ length: count }, choose);
    if (this.random() < 0.15) kinds.push('backup', 'backup'); // two backups of the same device at once
    if (kinds.filter((k) => k === 'backup').length >= 2) this.stats.sameDeviceBackups++;
    const running: { r: Running; killed: boolean; timer?: NodeJS.Timeout }[] = [];
    for (const k of kinds) {
      const r = await this.actor(k);
      const entry: { r: Running; killed: boolean; timer?: NodeJS.Timeout } = { r, killed: false };
      if (this.random() < this.c.killRate) {
        const delay = 50 + Math.floor(this.random() * 2500);
        entry.timer = setTimeout(() => {
          entry.killed = r.kill();
        }, delay);
      }
      running.push(entry);
    }
    this.log(`step ${this.stats.steps}: ${kinds.join(', ')}`);
    for (const e of running) {
      const res = await e.r.done;
      if (e.timer) clearTimeout(e.timer);
      this.outcome(e.r, res, e.killed);
    }
    this.stats.steps++;
    await this.check();
    this.mutate();
  }

  /** Every listed RP restores to what the backup that committed it read; none reported committed is lost. */
  async check(): Promise<void> {
    for (const [name, store] of [
      ['primary', this.dirStore],
      ['offsite', this.s3Store],
    ] as const) {
      const reader = new SafeReader(store, SAFE);
      let rps: number[];
      try {
        rps = await reader.listRps();
      } catch (e) {
        this.fail(`${name}: cannot list RPs: ${(e as Error).message}`);
        continue;
      }
      for (const rp of rps) {
        let got: string;
        try {
          got = sha(await reader.readImage(rp, 'disk'));
        } catch (e) {
          this.fail(`${name} RP ${rp} does not restore: ${(e as Error).message}`);
          continue;
        }
        this.stats.imagesChecked++;
        const want = this.expected.get(rp);
        if (want === undefined) {
          // committed by a backup that was killed before it could say so: one of those images
          if (this.unreported.has(got)) this.expected.set(rp, got);
          else this.fail(`${name} RP ${rp} holds bytes no backup read`);
        } else if (got !== want) this.fail(`${name} RP ${rp} restores other bytes than its backup read`);
      }
      if (name === 'primary') {
        const upTo = (await reader.generation().catch(() => undefined))?.upTo ?? 0;
        for (const rp of this.expected.keys())
          if (!rps.includes(rp) && rp > upTo)
            this.fail(`primary RP ${rp} was reported committed and is gone`);
      }
    }
  }

  /** Compacts every safe (grace 0) until nothing is left to do, then checks for orphans and losses. */
  async finish(): Promise<void> {
    for (const kind of ['compact dir', 'compact s3', 'compaction function', 'compact s3', 'compact dir']) {
      for (let i = 0; i < 3; i++) {
        const r = await this.actor(kind);
        const res = await r.done;
        this.outcome(r, res, false);
      }
    }
    await this.check();
    for (const [name, store] of [
      ['primary', this.dirStore],
      ['offsite', this.s3Store],
    ] as const) {
      const reader = new SafeReader(store, SAFE);
      const referenced = await referencedKeys(reader, await reader.generation());
      const present = new Set((await store.list(safePrefix(SAFE))).map((o) => o.key));
      for (const k of referenced)
        if (!present.has(k)) {
          this.stats.missing++;
          this.fail(`${name}: referenced ${k} is missing`);
        }
      for (const k of present) {
        const kind = parseKey(k).kind;
        if (referenced.has(k) || ['safe-config', 'policy', 'damage', 'lock'].includes(kind)) continue;
        this.stats.orphans++;
        this.fail(`${name}: ${k} is referenced by nothing after garbage collection`);
      }
      const locks = [...present].filter((k) => parseKey(k).kind === 'lock');
      if (locks.length > 0) this.fail(`${name}: locks left behind: ${locks.join(', ')}`);
    }
    this.stats.expired = [...this.expected.keys()].length - (await this.listed(this.dirStore)).length;
  }

  async run(): Promise<TortureStats> {
    writeFileSync(this.dev, this.img);
    const t0 = Date.now();
    // the first backup makes the safe; then its policy
    const first = this.backup();
    this.outcome(first, await first.done, false);
    const policy = await this.agent('policy', ['policy', '--safe', this.dir, '--last', '3', '--json']).done;
    if (policy.code !== 0) this.fail(`policy exited ${policy.code}: ${policy.stderr}`);
    this.mutate();
    const rep = this.agent('replicate', ['replicate', '--from', this.dir, '--to', this.s3url, '--json']);
    this.outcome(rep, await rep.done, false);
    const offsitePolicy = this.agent('policy', ['policy', '--safe', this.s3url, '--last', '4', '--json']);
    const op = await offsitePolicy.done;
    if (op.code !== 0) this.fail(`offsite policy exited ${op.code}: ${op.stderr}`);
    while (
      this.stats.steps < this.c.steps &&
      (this.c.deadlineMs === undefined || Date.now() - t0 < this.c.deadlineMs)
    )
      await this.step();
    await this.finish();
    return this.stats;
  }
}
