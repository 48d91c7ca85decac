/**
 * Replication throughput (issue 7): `cdp-agent replicate` of the bench's local safe to the
 * embedded S3, next to `rclone copy` of the same directory to the same S3 (Debian package,
 * installed if missing).
 */
import { spawnSync } from 'node:child_process';
import { check, dirBytes, runMeasured } from './measure.ts';
import { AGENT, agentEnv, repoRoot } from './ours.ts';

export interface CopyMeasurement {
  readonly seconds: number;
  readonly mbps: number;
  readonly bytes: number;
  readonly peakRssMiB: number | undefined;
}
export type CopyOutcome = CopyMeasurement | { readonly error: string };

export function ensureRclone(log: (m: string) => void): string | undefined {
  const version = (): string | undefined => {
    const r = spawnSync('rclone', ['version'], { encoding: 'utf8' });
    return r.status === 0 ? r.stdout.split('\n')[0] : undefined;
  };
  if (version()) return version();
  log('rclone not found on PATH: apt-get install -y rclone');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  if (spawnSync('apt-get', ['install', '-y', 'rclone'], { stdio: 'ignore', env }).status !== 0) {
    spawnSync('apt-get', ['update'], { stdio: 'ignore', env });
    spawnSync('apt-get', ['install', '-y', 'rclone'], { stdio: 'ignore', env });
  }
  return version();
}

/** rclone's S3 backend cannot combine AWS_CA_BUNDLE with its own HTTP transport. */
function withoutCaBundle(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { AWS_CA_BUNDLE: _drop, ...rest } = env;
  return rest;
}

const attempt = async (f: () => Promise<CopyMeasurement>): Promise<CopyOutcome> => {
  try {
    return await f();
  } catch (e) {
    return { error: (e as Error).message };
  }
};

/** Both copies of `safeDir` (a directory safe whose id is its last path component) to `endpoint`. */
export async function replicatePhase(
  safeDir: string,
  bucket: string,
  endpoint: string,
  awsEnv: NodeJS.ProcessEnv,
  log: (m: string) => void,
): Promise<{ ours: CopyOutcome; rclone: CopyOutcome | undefined; rcloneVersion: string | undefined }> {
  const bytes = dirBytes(safeDir);
  const safe = safeDir.split('/').filter(Boolean).pop()!;
  log(`ours replicate ${safeDir} → s3://${bucket}/safes/${safe} ...`);
  // the bucket must hold no other safe of that id: a replica of a different safe is refused
  const ours = await attempt(async () => {
    const r = await runMeasured(
      AGENT,
      ['replicate', '--from', safeDir, '--to', `s3://${bucket}/safes/${safe}`, '--json'],
      {
        cwd: repoRoot,
        env: agentEnv(awsEnv),
      },
    );
    check(r, 'cdp-agent replicate');
    return { seconds: r.seconds, mbps: bytes / 1e6 / r.seconds, bytes, peakRssMiB: r.peakRssMiB };
  });
  const rcloneVersion = ensureRclone(log);
  let rclone: CopyOutcome | undefined;
  if (rcloneVersion) {
    log(`rclone copy ${safeDir} → s3://${bucket}/rclone/${safe} ...`);
    rclone = await attempt(async () => {
      const r = await runMeasured(
        'rclone',
        ['copy', safeDir, `moto:${bucket}/rclone/${safe}`, '--transfers', '4'],
        {
          env: {
            ...withoutCaBundle(process.env),
            RCLONE_CONFIG_MOTO_TYPE: 's3',
            RCLONE_CONFIG_MOTO_PROVIDER: 'Other',
            RCLONE_CONFIG_MOTO_ENDPOINT: endpoint,
            RCLONE_CONFIG_MOTO_ACCESS_KEY_ID: 'test',
            RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY: 'test',
            RCLONE_CONFIG_MOTO_REGION: 'us-east-1',
            RCLONE_CONFIG_MOTO_FORCE_PATH_STYLE: 'true',
          },
        },
      );
      check(r, 'rclone copy');
      return { seconds: r.seconds, mbps: bytes / 1e6 / r.seconds, bytes, peakRssMiB: r.peakRssMiB };
    });
  } else log('rclone unavailable: no peer for replication throughput');
  for (const [name, o] of [
    ['ours', ours],
    ['rclone', rclone],
  ] as const) {
    if (o)
      log(
        'error' in o
          ? `${name}: ERROR ${o.error}`
          : `${name}: ${o.seconds.toFixed(2)} s, ${o.mbps.toFixed(0)} MB/s`,
      );
  }
  return { ours, rclone, rcloneVersion };
}

export function printReplicateReport(r: { ours: CopyOutcome; rclone: CopyOutcome | undefined }): void {
  const f = (o: CopyOutcome | undefined, g: (m: CopyMeasurement) => string): string =>
    o === undefined ? '-' : 'error' in o ? `error: ${o.error.slice(0, 60)}…` : g(o);
  const ratio =
    r.rclone && !('error' in r.rclone) && !('error' in r.ours)
      ? `${(r.ours.mbps / r.rclone.mbps).toFixed(2)}x`
      : '-';
  console.log('\n## Replicate the local safe to the embedded S3 (ratio = ours / rclone MB/s)\n');
  console.log(
    '| safe MiB | ours MB/s | rclone MB/s | ratio | ours s | rclone s | ours peak RSS MiB |\n|---|---|---|---|---|---|---|',
  );
  console.log(
    `| ${f(r.ours, (m) => (m.bytes / 2 ** 20).toFixed(0))} | ${f(r.ours, (m) => m.mbps.toFixed(0))} | ${f(r.rclone, (m) => m.mbps.toFixed(0))} | ${ratio} | ` +
      `${f(r.ours, (m) => m.seconds.toFixed(2))} | ${f(r.rclone, (m) => m.seconds.toFixed(2))} | ${f(r.ours, (m) => String(m.peakRssMiB?.toFixed(0)))} |`,
  );
}
