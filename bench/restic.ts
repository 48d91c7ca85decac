/** restic as the peer: installed from Debian when missing, driven with `backup --stdin`. */
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { check, runMeasured } from './measure.ts';
import { type Measurement, measurement, type Store } from './ours.ts';

function resticVersion(): string | undefined {
  const r = spawnSync('restic', ['version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** Returns `restic version`, installing the Debian package first if restic is not on PATH. */
export function ensureRestic(log: (m: string) => void): string {
  const have = resticVersion();
  if (have) return have;
  log('restic not found on PATH: apt-get install -y restic');
  const apt = (args: string[]) =>
    spawnSync('apt-get', args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      encoding: 'utf8',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  let r = apt(['install', '-y', 'restic']);
  if (r.status !== 0) {
    log('apt-get install failed, running apt-get update first');
    apt(['update']);
    r = apt(['install', '-y', 'restic']);
  }
  const v = resticVersion();
  if (!v) {
    throw new Error(
      'restic is not installed and `apt-get install -y restic` failed' +
        `${r.error ? ` (${r.error.message})` : ''}: ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ')}\n` +
        'install restic (Debian package `restic`) or run the bench with --only ours',
    );
  }
  return v;
}

export interface ResticTarget {
  /** RESTIC_REPOSITORY value. */
  readonly repo: string;
  /** Extra environment (S3 credentials). */
  readonly env: NodeJS.ProcessEnv;
  readonly cacheDir: string;
  /** Extra global options (e.g. -o s3.region=…). */
  readonly options: string[];
  readonly store: Store;
}

export function resticEnv(t: ResticTarget): NodeJS.ProcessEnv {
  return {
    ...process.env,
    ...t.env,
    RESTIC_REPOSITORY: t.repo,
    RESTIC_PASSWORD: 'bench',
    RESTIC_CACHE_DIR: t.cacheDir,
  };
}

export function resticInit(t: ResticTarget): void {
  mkdirSync(t.cacheDir, { recursive: true });
  try {
    execFileSync('restic', [...t.options, 'init'], { env: resticEnv(t), stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    const text = err.stderr?.toString().trim() || err.message;
    throw new Error(`restic init ${t.repo} failed: ${text.split('\n').slice(-4).join(' | ')}`);
  }
}

/** One `restic backup --stdin` of `image`; stored = repository growth. */
export async function resticBackup(t: ResticTarget, image: string, imageBytes: number): Promise<Measurement> {
  const before = await t.store.bytes();
  const fd = openSync(image, 'r');
  let r: Awaited<ReturnType<typeof runMeasured>>;
  try {
    r = await runMeasured(
      'restic',
      [...t.options, 'backup', '--json', '--stdin', '--stdin-filename', 'disk.img', '--host', 'bench'],
      { env: resticEnv(t), stdinFd: fd },
    );
  } finally {
    closeSync(fd);
  }
  check(r, 'restic backup');
  const after = await t.store.bytes();
  let reported: unknown;
  for (const line of r.stdout.split('\n').reverse()) {
    if (line.includes('"summary"')) {
      try {
        reported = JSON.parse(line);
      } catch {
        /* not JSON */
      }
      break;
    }
  }
  return measurement(r, imageBytes, after - before, reported);
}
