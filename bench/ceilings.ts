/**
 * What this machine allows at best, measured in the same run as the tools: the embedded S3's own
 * upload and download rates and CPU cost (moto, one Python process, with a client that does
 * nothing else), and the disk's time for a restore's reads and writes at once (dd with direct
 * I/O, nothing decoded).
 *
 * A run against the embedded S3 can be no faster than moto's own rate for its bytes, nor than the
 * CPU it needs split perfectly over the machine's cores: moto's CPU for those bytes plus the
 * agent's CPU for the same work against a directory (hashing, compression, decoding; measured in
 * the same run). A restore from a directory can be no faster than the disk. So
 * `restic seconds / floor seconds` bounds the ratio any agent could reach against restic here:
 * when it is below a target, the target is out of reach on this machine whatever the agent does.
 * The floors leave out process start, HTTP and scheduling costs, so the bounds are generous.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { signedWithChecksum } from '../adapters/s3-store.ts';
import { DEFAULT_SEGMENT_BYTES } from '../core/format/constants.ts';
import { MB, MiB } from './measure.ts';

interface S3Rates {
  /** PutObject rate, decimal MB/s. */
  readonly putMBps: number;
  /** Whole-object GetObject rate, decimal MB/s. */
  readonly getMBps: number;
  /** moto's CPU seconds per decimal MB uploaded and downloaded (undefined without its /proc). */
  readonly putCpuPerMB?: number;
  readonly getCpuPerMB?: number;
}

export interface S3Ceiling extends S3Rates {
  /** Bytes moved each way. */
  readonly bytes: number;
  /** Rates per requests in flight; the best of them is the ceiling (and its CPU cost). */
  readonly inFlight: Record<number, S3Rates>;
}

export interface DiskCeiling {
  readonly readBytes: number;
  readonly writeBytes: number;
  /** Seconds for both at once (direct I/O, 4 MiB requests). */
  readonly seconds: number;
}

export interface Ceilings {
  readonly s3?: S3Ceiling;
  readonly disk?: DiskCeiling;
  /** Cores the CPU floors divide by. */
  readonly cores: number;
}

const TICKS_PER_SECOND = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** CPU seconds `pid` has used so far (user + system), or undefined when /proc does not say. */
function cpuOf(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    // the command name (field 2) may hold spaces; the fields after it are space separated
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

/** Wall seconds and the CPU seconds `pid` used while `f` ran. */
async function timed(pid: number | undefined, f: () => Promise<void>): Promise<{ s: number; cpu?: number }> {
  const c0 = cpuOf(pid);
  const t0 = performance.now();
  await f();
  const s = (performance.now() - t0) / 1000;
  const c1 = cpuOf(pid);
  return { s, cpu: c0 === undefined || c1 === undefined ? undefined : c1 - c0 };
}

export const machineCores = (): number => cpus().length;

/** Runs `n` tasks, `inFlight` at a time. */
async function pool(n: number, inFlight: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < n) await task(next++);
    }),
  );
}

/**
 * Segment-sized objects (32 MiB of random bytes, as incompressible as the image's random third)
 * uploaded with single PUTs and read back whole, with 1, 2 and 4 requests in flight; `motoPid`
 * is the server's process, whose CPU time is read around each pass.
 */
export async function s3Ceiling(
  s3: S3Client,
  bucket: string,
  bytes: number,
  motoPid?: number,
): Promise<S3Ceiling> {
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const body = randomBytes(DEFAULT_SEGMENT_BYTES);
  const checksum = createHash('sha256').update(body).digest('base64');
  const objects = Math.max(4, Math.ceil(bytes / body.length));
  const moved = objects * body.length;
  const inFlight: Record<number, S3Rates> = {};
  const perMB = (cpu: number | undefined) => (cpu === undefined ? undefined : cpu / (moved / 1e6));
  for (const n of [1, 2, 4]) {
    const key = (i: number) => `ceiling/${n}/${String(i).padStart(4, '0')}`;
    const put = await timed(motoPid, () =>
      pool(objects, n, async (i) => {
        await s3.send(
          signedWithChecksum(
            new PutObjectCommand({
              Bucket: bucket,
              Key: key(i),
              Body: body,
              ChecksumAlgorithm: 'SHA256',
              ChecksumSHA256: checksum,
            }),
          ),
        );
      }),
    );
    const get = await timed(motoPid, () =>
      pool(objects, n, async (i) => {
        const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key(i) }));
        let got = 0;
        for await (const c of r.Body as AsyncIterable<Uint8Array>) got += c.byteLength;
        if (got !== body.length) throw new Error(`${key(i)}: read ${got} bytes, wrote ${body.length}`);
      }),
    );
    inFlight[n] = {
      putMBps: MB(moved, put.s),
      getMBps: MB(moved, get.s),
      putCpuPerMB: perMB(put.cpu),
      getCpuPerMB: perMB(get.cpu),
    };
  }
  const all = Object.values(inFlight);
  const bestPut = all.reduce((a, b) => (b.putMBps > a.putMBps ? b : a));
  const bestGet = all.reduce((a, b) => (b.getMBps > a.getMBps ? b : a));
  return {
    bytes: moved,
    putMBps: bestPut.putMBps,
    putCpuPerMB: bestPut.putCpuPerMB,
    getMBps: bestGet.getMBps,
    getCpuPerMB: bestGet.getCpuPerMB,
    inFlight,
  };
}

/**
 * The least time a run moving `bytes` through the embedded S3 can take here: moto's rate for
 * them, or the CPU the run needs (moto's for those bytes plus `agentCpuSeconds`, the agent's CPU
 * for the same work without S3) over every core, whichever is longer.
 */
export function s3FloorSeconds(
  c: Ceilings,
  way: 'put' | 'get',
  bytes: number,
  agentCpuSeconds: number | undefined,
): number | undefined {
  if (!c.s3) return undefined;
  const mb = bytes / 1e6;
  const rate = mb / (way === 'put' ? c.s3.putMBps : c.s3.getMBps);
  const motoCpu = way === 'put' ? c.s3.putCpuPerMB : c.s3.getCpuPerMB;
  if (motoCpu === undefined || agentCpuSeconds === undefined) return rate;
  return Math.max(rate, (motoCpu * mb + agentCpuSeconds) / c.cores);
}

function dd(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('dd', [...args, 'bs=4M', 'status=none'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`dd ${args.join(' ')}: ${err}`))));
  });
}

/**
 * A restore's disk work alone: `readBytes` read from a file not in the page cache while
 * `writeBytes` are written to another, both with direct I/O, at once (in `dir`, on the disk the
 * bench restores to).
 */
export async function diskCeiling(dir: string, readBytes: number, writeBytes: number): Promise<DiskCeiling> {
  const src = join(dir, 'ceiling-read.bin');
  const dst = join(dir, 'ceiling-write.bin');
  const blocks = (n: number) => String(Math.ceil(n / (4 * 2 ** 20)));
  try {
    // written with direct I/O, so none of it is in the page cache when it is read back
    await dd(['if=/dev/zero', `of=${src}`, `count=${blocks(readBytes)}`, 'oflag=direct']);
    const t0 = performance.now();
    await Promise.all([
      dd([`if=${src}`, 'of=/dev/null', 'iflag=direct']),
      dd(['if=/dev/zero', `of=${dst}`, `count=${blocks(writeBytes)}`, 'oflag=direct']),
    ]);
    return { readBytes, writeBytes, seconds: (performance.now() - t0) / 1000 };
  } finally {
    rmSync(src, { force: true });
    rmSync(dst, { force: true });
  }
}

/** The best ratio against restic that a tool could reach if it took no longer than `floorSeconds`. */
export const boundRatio = (resticSeconds: number, floorSeconds: number): number =>
  resticSeconds / floorSeconds;

export function printCeilings(c: Ceilings): void {
  console.log('\n## Environment ceilings (same run; what any agent could reach here at best)\n');
  console.log('| what | measured |\n|---|---|');
  if (c.s3) {
    const cpu = (v: number | undefined) => (v === undefined ? '?' : `${(v * 1000).toFixed(1)} ms/MB`);
    const per = Object.entries(c.s3.inFlight)
      .map(([n, v]) => `${n} in flight: PUT ${v.putMBps.toFixed(0)}, GET ${v.getMBps.toFixed(0)}`)
      .join('; ');
    console.log(
      `| embedded S3 (moto), ${MiB(c.s3.bytes).toFixed(0)} MiB of 32 MiB objects, nothing else running | ` +
        `PUT ${c.s3.putMBps.toFixed(0)} MB/s (moto CPU ${cpu(c.s3.putCpuPerMB)}), ` +
        `GET ${c.s3.getMBps.toFixed(0)} MB/s (moto CPU ${cpu(c.s3.getCpuPerMB)}); ${per} |`,
    );
  }
  console.log(`| cores the CPU floors divide by | ${c.cores} |`);
  if (c.disk) {
    console.log(
      `| disk, direct I/O: read ${MiB(c.disk.readBytes).toFixed(0)} MiB while writing ${MiB(c.disk.writeBytes).toFixed(0)} MiB | ` +
        `${c.disk.seconds.toFixed(2)} s |`,
    );
  }
}
