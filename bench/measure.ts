/** Running a measured child process (wall time, peak RSS) and sizing what it stored. */
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';

const TIME = '/usr/bin/time';
const hasTime = existsSync(TIME);
const TAIL = 256 * 1024;

export interface RunResult {
  readonly code: number | null;
  readonly signal: string | null;
  readonly seconds: number;
  /** Peak resident set size in MiB (undefined if it could not be measured). */
  readonly peakRssMiB: number | undefined;
  /** User plus system CPU seconds of the process and its threads (undefined without /usr/bin/time). */
  readonly cpuSeconds: number | undefined;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  /** A file descriptor fed to the child's stdin. */
  readonly stdinFd?: number;
}

/** Keeps the last TAIL bytes of a stream. */
function tail(): { push(b: Buffer): void; text(): string } {
  let chunks: Buffer[] = [];
  let size = 0;
  return {
    push(b) {
      chunks.push(b);
      size += b.length;
      if (size > 2 * TAIL) {
        const all = Buffer.concat(chunks);
        chunks = [all.subarray(all.length - TAIL)];
        size = TAIL;
      }
    },
    text: () => Buffer.concat(chunks).toString('utf8'),
  };
}

function vmHwmKiB(pid: number): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+)\s*kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Runs `cmd args` and measures wall time, peak RSS and CPU time: under /usr/bin/time when present,
 * else peak RSS by polling VmHWM in /proc/<pid>/status (and no CPU time).
 */
export function runMeasured(cmd: string, args: string[], o: RunOptions = {}): Promise<RunResult> {
  const scratch = mkdtempSync(join(tmpdir(), 'bench-time-'));
  const timeOut = join(scratch, 'rss');
  const [file, argv] = hasTime ? [TIME, ['-f', '%M %U %S', '-o', timeOut, cmd, ...args]] : [cmd, args];
  const t0 = performance.now();
  const child = spawn(file, argv, {
    cwd: o.cwd,
    env: o.env ?? process.env,
    stdio: [o.stdinFd ?? 'ignore', 'pipe', 'pipe'],
  });
  const out = tail();
  const err = tail();
  child.stdout!.on('data', (b: Buffer) => out.push(b));
  child.stderr!.on('data', (b: Buffer) => err.push(b));
  let polled: number | undefined;
  const poll = hasTime
    ? undefined
    : setInterval(() => {
        const v = child.pid === undefined ? undefined : vmHwmKiB(child.pid);
        if (v !== undefined) polled = Math.max(polled ?? 0, v);
      }, 50);
  return new Promise((resolve, reject) => {
    child.on('error', (e) => {
      if (poll) clearInterval(poll);
      rmSync(scratch, { recursive: true, force: true });
      reject(e);
    });
    child.on('close', (code, signal) => {
      const seconds = (performance.now() - t0) / 1000;
      if (poll) clearInterval(poll);
      let kib = polled;
      let cpuSeconds: number | undefined;
      if (hasTime) {
        try {
          const lines = readFileSync(timeOut, 'utf8').trim().split('\n');
          const [rss, user, sys] = lines[lines.length - 1]!.split(' ').map(Number);
          if (Number.isFinite(rss)) kib = rss;
          if (Number.isFinite(user) && Number.isFinite(sys)) cpuSeconds = user! + sys!;
        } catch {
          /* time did not write it (killed) */
        }
      }
      rmSync(scratch, { recursive: true, force: true });
      resolve({
        code,
        signal,
        seconds,
        peakRssMiB: kib === undefined ? undefined : kib / 1024,
        cpuSeconds,
        stdout: out.text(),
        stderr: err.text(),
      });
    });
  });
}

/** Throws with the tail of stderr when the process failed. */
export function check(r: RunResult, what: string): RunResult {
  if (r.code === 0) return r;
  const msg = (r.stderr.trim() || r.stdout.trim()).split('\n').slice(-6).join(' | ');
  throw new Error(`${what} failed (${r.signal ?? `exit ${r.code}`}): ${msg.slice(0, 600)}`);
}

/** Sum of the sizes of the regular files under `dir` (0 if it does not exist). */
export function dirBytes(dir: string): number {
  let total = 0;
  let entries: import('node:fs').Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += dirBytes(p);
    else if (e.isFile()) total += lstatSync(p).size;
  }
  return total;
}

/** Sum of the sizes of the objects under `prefix` in `bucket`. */
export async function s3Bytes(s3: S3Client, bucket: string, prefix: string): Promise<number> {
  let total = 0;
  let token: string | undefined;
  do {
    const r = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const o of r.Contents ?? []) total += o.Size ?? 0;
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  return total;
}

export const MB = (bytes: number, seconds: number): number => bytes / 1e6 / seconds;
export const MiB = (bytes: number): number => bytes / 2 ** 20;
