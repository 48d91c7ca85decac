/**
 * `node bench/lag.ts` (also run by `npm run bench`): replication lag under steady writes (issue 7).
 * A writer rewrites 10 MB/s of a 2 GiB image in scattered 64 KiB writes while `cdp-agent run`
 * takes RPs into a primary directory safe and replicates them to the embedded S3. Every 250 ms the
 * bench samples the lag: now minus the capture start of the newest RP durable at the offsite
 * destination, which bounds how old the newest offsite copy of any write is. Two modes:
 *   scan          every RP reads the whole device (interval 30 s)
 *   changed-list  the writer doubles as the change tracker (an extent list, rotated by the
 *                 pre-snapshot command), so an RP reads only what changed (interval 5 s)
 * Flags: --size-mib N (2048), --seconds N (measured time per mode, 120), --only scan|changed-list.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  appendFileSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { buildAgent } from '../scripts/build-agent.ts';
import { startMoto, stopMoto } from '../scripts/localcloud/moto.ts';
import { makeImage } from './images.ts';
import { AGENT, agentEnv, repoRoot } from './ours.ts';

export interface LagResult {
  readonly mode: 'scan' | 'changed-list';
  readonly intervalSeconds: number;
  readonly samples: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly rps: number;
  /** Objects written per RP at the destination (segments, maps, manifest) and S3 requests per month. */
  readonly objectsPerRp: number;
  readonly requestsPerMonth: number;
  readonly writtenMB: number;
}

const log = (m: string) => console.error(`[lag] ${m}`);
const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? Number.NaN;
};

/** Scattered 64 KiB writes at `mbps`; records each extent for the changed-list tracker. */
function startWriter(image: string, size: number, mbps: number, tracker?: string): { stop(): number } {
  const fd = openSync(image, 'r+');
  const piece = 64 * 1024;
  const perTick = Math.max(1, Math.round((mbps * 1e6) / 10 / piece)); // 10 ticks per second
  const buf = Buffer.alloc(piece);
  let written = 0;
  let seed = 1;
  const timer = setInterval(() => {
    const lines: string[] = [];
    for (let i = 0; i < perTick; i++) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      const off = (seed % Math.floor(size / piece)) * piece;
      buf.fill(seed & 0xff);
      buf.writeUInt32LE(seed, 0);
      lines.push(`${off} ${piece}`);
      writeSync(fd, buf, 0, piece, off);
      written += piece;
    }
    // the tracker records after the data write: an RP that misses the record missed the write too
    if (tracker) appendFileSync(tracker, `${lines.join('\n')}\n`);
  }, 100);
  return {
    stop() {
      clearInterval(timer);
      closeSync(fd);
      return written;
    },
  };
}

async function newestOffsite(
  s3: S3Client,
  bucket: string,
  safe: string,
): Promise<{ rp: number; start: number } | undefined> {
  const r = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `safes/${safe}/rp/` }));
  const keys = (r.Contents ?? []).map((o) => o.Key!).sort();
  const last = keys.at(-1);
  if (!last) return undefined;
  const body = await (
    await s3.send(new GetObjectCommand({ Bucket: bucket, Key: last }))
  ).Body!.transformToString();
  const m = JSON.parse(body) as { rp: number; createdAt: string; stats: { durationMs: number } };
  return { rp: m.rp, start: Date.parse(m.createdAt) - m.stats.durationMs };
}

async function countObjects(s3: S3Client, bucket: string, prefix: string): Promise<number> {
  let n = 0;
  let token: string | undefined;
  do {
    const r = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    n += r.KeyCount ?? 0;
    token = r.NextContinuationToken;
  } while (token);
  return n;
}

export async function measureLag(opts: {
  sizeMiB: number;
  seconds: number;
  modes: ('scan' | 'changed-list')[];
  workDir: string;
  image: string;
}): Promise<LagResult[]> {
  const moto = await startMoto();
  const results: LagResult[] = [];
  try {
    const s3 = new S3Client({
      endpoint: moto.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      forcePathStyle: true,
    });
    await s3.send(new CreateBucketCommand({ Bucket: 'lag' }));
    const env = {
      AWS_ENDPOINT_URL: moto.endpoint,
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_REGION: 'us-east-1',
    };
    for (const mode of opts.modes) {
      const dir = join(opts.workDir, `lag-${mode}`);
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      const disk = join(dir, 'disk.img');
      copyFileSync(opts.image, disk);
      const size = opts.sizeMiB * 2 ** 20;
      const interval = mode === 'scan' ? 30 : 5;
      const safe = `lag-${mode}`;
      const tracker = join(dir, 'tracker.txt');
      const taken = join(dir, 'taken.txt');
      const config = join(dir, 'agent.json');
      writeFileSync(
        config,
        JSON.stringify({
          interval: `${interval}s`,
          stateDir: join(dir, 'state'),
          statusFile: join(dir, 'status.json'),
          safes: [
            {
              safe: join(dir, 'primary', safe),
              devices: [`${disk}=disk`],
              replicateTo: [`s3://lag/safes/${safe}`],
              ...(mode === 'changed-list'
                ? {
                    // rotate the tracker's list atomically: this RP takes what was written so far
                    preSnapshot: `touch ${tracker} && mv -f ${tracker} ${taken}`,
                    changedLists: { disk: taken },
                  }
                : {}),
            },
          ],
        }),
      );
      log(
        `${mode}: first (full) RP of ${opts.sizeMiB} MiB, then ${opts.seconds} s of 10 MB/s writes, interval ${interval} s`,
      );
      const daemon: ChildProcess = spawn(AGENT, ['run', '--config', config], {
        cwd: repoRoot,
        env: agentEnv(env),
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      daemon.stderr!.on('data', (d) => (stderr += d));
      const exited = new Promise<number | null>((r) => daemon.on('exit', (code) => r(code)));
      try {
        // warm-up: wait for the full RP to arrive offsite
        const warmDeadline = Date.now() + 600_000;
        while (!(await newestOffsite(s3, 'lag', safe))) {
          if (Date.now() > warmDeadline) throw new Error(`no RP offsite after 10 min: ${stderr.slice(-500)}`);
          if (daemon.exitCode !== null)
            throw new Error(`cdp-agent run exited ${daemon.exitCode}: ${stderr.slice(-500)}`);
          await new Promise((r) => setTimeout(r, 250));
        }
        const first = (await newestOffsite(s3, 'lag', safe))!.rp;
        const objectsBefore = await countObjects(s3, 'lag', `safes/${safe}/`);
        const writer = startWriter(disk, size, 10, mode === 'changed-list' ? tracker : undefined);
        const samples: number[] = [];
        const t0 = Date.now();
        let newest = first;
        while (Date.now() - t0 < opts.seconds * 1000) {
          const n = await newestOffsite(s3, 'lag', safe);
          if (n) {
            newest = n.rp;
            samples.push((Date.now() - n.start) / 1000);
          }
          await new Promise((r) => setTimeout(r, 250));
        }
        const written = writer.stop();
        const rps = newest - first;
        const objects = (await countObjects(s3, 'lag', `safes/${safe}/`)) - objectsBefore;
        const objectsPerRp = rps > 0 ? objects / rps : Number.NaN;
        // each object is one PUT, or (segments over 5 MiB) a multipart upload: count 3 requests
        // per object plus the replicate's HEAD per object and LIST per run, as an upper estimate
        const requestsPerRp = objectsPerRp * 4 + 2;
        const requestsPerMonth = (requestsPerRp * 30 * 86_400) / interval;
        const r: LagResult = {
          mode,
          intervalSeconds: interval,
          samples: samples.length,
          p50: quantile(samples, 0.5),
          p99: quantile(samples, 0.99),
          max: Math.max(...samples),
          rps,
          objectsPerRp,
          requestsPerMonth,
          writtenMB: written / 1e6,
        };
        log(
          `${mode}: p50 ${r.p50.toFixed(1)} s, p99 ${r.p99.toFixed(1)} s, max ${r.max.toFixed(1)} s over ${rps} RPs`,
        );
        results.push(r);
      } finally {
        daemon.kill('SIGTERM');
        const timer = setTimeout(() => daemon.kill('SIGKILL'), 60_000);
        await exited;
        clearTimeout(timer);
        rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    await stopMoto(moto.pid);
  }
  return results;
}

export function printLagReport(results: LagResult[]): void {
  console.log('\n## Replication lag: write → RP durable offsite (10 MB/s of scattered writes)\n');
  console.log(
    '| mode | interval s | RPs | lag p50 s | lag p99 s | max s | objects/RP | S3 requests/month (est.) | ≤ 15 s p99 |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    console.log(
      `| ${r.mode} | ${r.intervalSeconds} | ${r.rps} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.max.toFixed(1)} | ${r.objectsPerRp.toFixed(1)} | ${Math.round(r.requestsPerMonth).toLocaleString('en')} | ${r.mode === 'changed-list' ? (r.p99 <= 15 ? 'PASS' : 'FAIL') : '-'} |`,
    );
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      'size-mib': { type: 'string', default: '2048' },
      seconds: { type: 'string', default: '120' },
      only: { type: 'string' },
    },
  });
  const sizeMiB = Number(values['size-mib']);
  const workDir = join(import.meta.dirname, 'work');
  const image = join(workDir, 'images', `disk-${sizeMiB}m-seed1.img`);
  if (!existsSync(image)) {
    mkdirSync(join(workDir, 'images'), { recursive: true });
    makeImage(sizeMiB, image, 1);
  }
  log(`agent bundle: ${await buildAgent()}`);
  spawnSync('sync');
  const modes = values.only ? [values.only as 'scan' | 'changed-list'] : (['scan', 'changed-list'] as const);
  printLagReport(
    await measureLag({ sizeMiB, seconds: Number(values.seconds), modes: [...modes], workDir, image }),
  );
}
