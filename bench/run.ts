/**
 * `npm run bench`: our agent against restic on one deterministic image, full then incremental
 * after a 1% scattered mutation, to a local directory and to the embedded S3 (moto); then restore
 * of the latest RP (and our delta restore over the previous image) next to `restic restore`.
 * Then the replication lag under steady writes (bench/lag.ts; about 5 minutes; --skip-lag), and
 * compaction: 30 simulated days of hourly RPs with and without it (bench/compaction.ts; about
 * 3 minutes at --compaction-mib 256; --skip-compaction).
 * Flags: --size-mib N (2048), --seed N (1), --skip-s3, --only ours|restic, --keep (leave the safes),
 * --skip-lag, --lag-seconds N (120 per mode).
 * Large sparse devices (peak RSS against the device size): `node bench/sparse.ts`.
 */

import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { buildAgent } from '../scripts/build-agent.ts';
import { startMoto, stopMoto } from '../scripts/localcloud/moto.ts';
import { type Ceilings, diskCeiling, machineCores, printCeilings, s3Ceiling } from './ceilings.ts';
import { type CompactionBench, compactionBench, printCompactionReport } from './compaction.ts';
import { type ImageInfo, type MutationInfo, makeImage, mutateImage } from './images.ts';
import { type LagResult, measureLag, printLagReport } from './lag.ts';
import { dirBytes, MiB, s3Bytes } from './measure.ts';
import { type Measurement, type OursTarget, oursBackup, repoRoot } from './ours.ts';
import { printReplicateReport, replicatePhase } from './replicate.ts';
import { type Outcome, printReport, printTargets, type Row } from './report.ts';
import { ensureRestic, type ResticTarget, resticBackup, resticInit } from './restic.ts';
import { printRestoreReport, type RestoreRow, restorePhase } from './restore.ts';

const { values: flags } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '2048' },
    seed: { type: 'string', default: '1' },
    'skip-s3': { type: 'boolean', default: false },
    only: { type: 'string' },
    keep: { type: 'boolean', default: false },
    'skip-lag': { type: 'boolean', default: false },
    'lag-seconds': { type: 'string', default: '120' },
    'skip-compaction': { type: 'boolean', default: false },
    'compaction-mib': { type: 'string', default: '256' },
  },
});
const sizeMiB = Number(flags['size-mib']);
const seed = Number(flags.seed);
if (!Number.isInteger(sizeMiB) || sizeMiB < 16) throw new Error('--size-mib must be an integer >= 16');
if (flags.only && flags.only !== 'ours' && flags.only !== 'restic') throw new Error('--only ours|restic');
const runOurs = flags.only !== 'restic';
const runRestic = flags.only !== 'ours';
const MUTATE_PERCENT = 1;
const MUTATE_SEED = 7;

const log = (m: string) => console.error(`[bench] ${m}`);
const benchDir = import.meta.dirname;
const workDir = join(benchDir, 'work');
const runDir = join(workDir, 'run');

/** The cached image for (size, seed), generated on first use. */
function cachedImage(): { path: string; info: ImageInfo | undefined } {
  const dir = join(workDir, 'images');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `disk-${sizeMiB}m-seed${seed}.img`);
  if (existsSync(path) && existsSync(`${path}.map`) && statSync(path).size === sizeMiB * 2 ** 20) {
    log(`reusing cached image ${path}`);
    return { path, info: undefined };
  }
  log(`generating ${sizeMiB} MiB image (seed ${seed}) -> ${path}`);
  const t0 = performance.now();
  const tmp = `${path}.tmp`;
  const info = makeImage(sizeMiB, tmp, seed);
  renameSync(`${tmp}.map`, `${path}.map`);
  renameSync(tmp, path);
  const pct = (n: number) => ((n / info.bytes) * 100).toFixed(1);
  log(
    `image ready in ${((performance.now() - t0) / 1000).toFixed(1)} s: zero ${pct(info.zero)}%, ` +
      `text ${pct(info.text)}%, random ${pct(info.random)}% (corpus sha256[:16] ${info.corpusSha16})`,
  );
  return { path, info };
}

async function attempt(what: string, image: string, f: () => Promise<Measurement>): Promise<Outcome> {
  log(`${what} ...`);
  // Flush the previous run's (or the image copy's) dirty pages so its writeback does not slow this one.
  spawnSync('sync');
  // Every tool reads the image from the page cache: the copy (copy_file_range) may have left it
  // uncached for whichever tool runs first.
  spawnSync('cat', [image], { stdio: 'ignore' });
  try {
    const m = await f();
    const rss = m.peakRssMiB === undefined ? '?' : m.peakRssMiB.toFixed(0);
    const self = (m.reported as { seconds?: unknown } | undefined)?.seconds;
    log(
      `${what}: ${m.seconds.toFixed(2)} s, ${m.mbps.toFixed(0)} MB/s, stored ${MiB(m.storedBytes).toFixed(1)} MiB, ` +
        `peak RSS ${rss} MiB${typeof self === 'number' ? ` (self-reported ${self.toFixed(2)} s)` : ''}`,
    );
    return m;
  } catch (e) {
    const error = (e as Error).message;
    log(`${what}: ERROR ${error}`);
    return { error };
  }
}

interface Target {
  readonly name: 'local' | 'S3';
  readonly ours: OursTarget;
  readonly restic: ResticTarget;
  resticInitError?: string;
}

async function main(): Promise<void> {
  const loadStart = loadavg()[0]!;
  if (loadStart > 1)
    log(`warning: load average ${loadStart.toFixed(2)}: other work may compete for the CPUs`);
  log(`agent bundle: ${await buildAgent()}`);
  const resticVersion = runRestic ? ensureRestic(log) : undefined;
  if (resticVersion) log(resticVersion);
  rmSync(runDir, { recursive: true, force: true });
  mkdirSync(runDir, { recursive: true });
  const img = cachedImage();
  const disk = join(runDir, 'disk.img');
  copyFileSync(img.path, disk);
  const imageBytes = statSync(disk).size;

  const local = join(runDir, 'local');
  const targets: Target[] = [
    {
      name: 'local',
      ours: {
        safe: join(local, 'safes', 'b1'),
        stateDir: join(local, 'state'),
        env: {},
        store: { describe: 'dir', bytes: async () => dirBytes(join(local, 'safes', 'b1')) },
      },
      restic: {
        repo: join(local, 'restic'),
        env: {},
        cacheDir: join(local, 'restic-cache'),
        options: [],
        store: { describe: 'dir', bytes: async () => dirBytes(join(local, 'restic')) },
      },
    },
  ];
  let moto: Awaited<ReturnType<typeof startMoto>> | undefined;
  let s3: S3Client | undefined;
  let ceilings: Ceilings = { cores: machineCores() };
  const rows: Row[] = [];
  let mutation: MutationInfo | undefined;
  const restoreRows: RestoreRow[] = [];
  let replication: Awaited<ReturnType<typeof replicatePhase>> | undefined;
  const previous = join(runDir, 'disk-previous.img');
  try {
    if (!flags['skip-s3']) {
      log('starting moto (embedded S3)');
      moto = await startMoto();
      const creds = { accessKeyId: 'test', secretAccessKey: 'test' };
      s3 = new S3Client({
        endpoint: moto.endpoint,
        region: 'us-east-1',
        credentials: creds,
        forcePathStyle: true,
      });
      for (const b of ['bench-ours', 'bench-restic', 'bench-replica'])
        await s3.send(new CreateBucketCommand({ Bucket: b }));
      const awsEnv = {
        AWS_ENDPOINT_URL: moto.endpoint,
        AWS_ACCESS_KEY_ID: 'test',
        AWS_SECRET_ACCESS_KEY: 'test',
        AWS_REGION: 'us-east-1',
        AWS_DEFAULT_REGION: 'us-east-1',
      };
      const s3dir = join(runDir, 's3');
      targets.push({
        name: 'S3',
        ours: {
          safe: 's3://bench-ours/safes/b1',
          stateDir: join(s3dir, 'state'),
          env: awsEnv,
          store: { describe: 's3', bytes: () => s3Bytes(s3!, 'bench-ours', 'safes/b1/') },
        },
        restic: {
          repo: `s3:${moto.endpoint}/bench-restic/restic`,
          env: awsEnv,
          cacheDir: join(s3dir, 'restic-cache'),
          options: ['-o', 's3.region=us-east-1'],
          store: { describe: 's3', bytes: () => s3Bytes(s3!, 'bench-restic', 'restic/') },
        },
      });
    }
    for (const t of targets) {
      if (!runRestic) continue;
      try {
        log(`restic init (${t.name})`);
        resticInit(t.restic);
      } catch (e) {
        t.resticInitError = (e as Error).message;
        log(`restic ${t.name}: ${t.resticInitError}`);
      }
    }
    const phase = async (kind: 'full' | 'incr') => {
      for (const t of targets) {
        const ours = runOurs
          ? await attempt(`ours ${kind} ${t.name}`, disk, () => oursBackup(t.ours, disk, imageBytes))
          : undefined;
        const restic = !runRestic
          ? undefined
          : t.resticInitError
            ? { error: t.resticInitError }
            : await attempt(`restic ${kind} ${t.name}`, disk, () => resticBackup(t.restic, disk, imageBytes));
        rows.push({ label: `${kind} ${t.name}`, kind, target: t.name, ours, restic });
      }
    };
    await phase('full');
    copyFileSync(disk, previous);
    log(`mutating ${MUTATE_PERCENT}% of the image (seed ${MUTATE_SEED})`);
    mutation = mutateImage(disk, MUTATE_PERCENT, MUTATE_SEED);
    log(
      `mutated: ${mutation.writes} writes, ${MiB(mutation.distinctBytes).toFixed(1)} MiB distinct; dirty MiB by block size: ` +
        Object.entries(mutation.dirtyMiB)
          .map(([k, v]) => `${k} ${v.toFixed(1)}`)
          .join(', '),
    );
    await phase('incr');
    for (const t of targets) {
      restoreRows.push(
        await restorePhase(
          t.name,
          runOurs ? { safe: t.ours.safe, env: t.ours.env } : undefined,
          runRestic && !t.resticInitError ? t.restic : undefined,
          previous,
          runDir,
          imageBytes,
          log,
        ),
      );
    }
    if (moto && runOurs) {
      replication = await replicatePhase(
        join(local, 'safes', 'b1'),
        'bench-replica',
        moto.endpoint,
        targets[1]!.ours.env,
        log,
      );
    }
    ceilings = await measureCeilings(s3, moto?.pid, restoreRows);
  } finally {
    if (moto) await stopMoto(moto.pid);
    if (!flags.keep) rmSync(runDir, { recursive: true, force: true });
  }

  const meta = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    loadAvg1m: { start: loadStart, end: loadavg()[0] },
    restic: resticVersion,
    sizeMiB,
    seed,
    imageBytes,
    image: img.info,
    mutation: { percent: MUTATE_PERCENT, seed: MUTATE_SEED, ...mutation },
  };
  const order = (r: Row) => (r.target === 'local' ? 0 : 2) + (r.kind === 'full' ? 0 : 1);
  rows.sort((a, b) => order(a) - order(b));
  printCeilings(ceilings);
  const backupTargets = printReport(rows, sizeMiB, ceilings);
  const restoreTargets = printRestoreReport(
    restoreRows,
    (mutation?.dirtyMiB['64K'] ?? 0) * 2 ** 20,
    ceilings,
  );
  const results = [...backupTargets, ...restoreTargets];
  if (replication) printReplicateReport(replication);
  let lag: LagResult[] | undefined;
  if (runOurs && !flags['skip-lag']) {
    lag = await measureLag({
      sizeMiB,
      seconds: Number(flags['lag-seconds']),
      modes: ['scan', 'changed-list'],
      workDir,
      image: img.path,
    });
    printLagReport(lag);
  }
  let compaction: CompactionBench | undefined;
  if (runOurs && !flags['skip-compaction']) {
    compaction = await compactionBench({
      workDir,
      sizeMiB: Number(flags['compaction-mib']),
      days: 30,
      seed,
      log,
    });
    printCompactionReport(compaction);
  }
  printTargets('Restore targets (issue 5)', restoreTargets);
  mkdirSync(join(benchDir, 'results'), { recursive: true });
  const out = join(benchDir, 'results', 'latest.json');
  writeFileSync(
    out,
    `${JSON.stringify({ ...meta, rows, restore: restoreRows, replication, lag, compaction, ceilings, targets: results }, null, 2)}\n`,
  );
  log(`results written to ${out.replace(`${repoRoot}/`, '')}`);
}

/**
 * The environment's floors (bench/ceilings.ts), measured once the tools are done: the embedded
 * S3's rates over as many bytes as our S3 restore fetched, and the disk's for our local restore's
 * reads and writes.
 */
async function measureCeilings(
  s3: S3Client | undefined,
  motoPid: number | undefined,
  restoreRows: RestoreRow[],
): Promise<Ceilings> {
  const measured = (target: 'local' | 'S3') => {
    const o = restoreRows.find((r) => r.target === target)?.ours;
    return o && !('error' in o) ? o : undefined;
  };
  let s3Ceil: Ceilings['s3'];
  let disk: Ceilings['disk'];
  const remote = measured('S3');
  if (s3 && remote?.fetchedBytes) {
    log('measuring the embedded S3 alone (upload and download ceilings)');
    s3Ceil = await s3Ceiling(s3, 'bench-ceiling', remote.fetchedBytes, motoPid).catch((e: Error) => {
      log(`S3 ceiling: ERROR ${e.message}`);
      return undefined;
    });
  }
  const local = measured('local');
  if (local?.fetchedBytes && local.writtenBytes) {
    log("measuring the disk alone (a restore's reads and writes, direct I/O)");
    spawnSync('sync');
    disk = await diskCeiling(runDir, local.fetchedBytes, local.writtenBytes).catch((e: Error) => {
      log(`disk ceiling: ERROR ${e.message}`);
      return undefined;
    });
  }
  return { cores: machineCores(), s3: s3Ceil, disk };
}

await main();
