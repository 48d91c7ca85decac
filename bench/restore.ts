/**
 * Restore figures (issue 5): our agent's restore of the latest RP into a new file, and a delta
 * restore over the image as it was at the previous RP, next to `restic restore` of the same
 * snapshot from the same kind of repository. Both figures include getting the data onto the disk
 * (ours fsyncs; restic's time includes a `sync`).
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { boundRatio, type Ceilings, s3FloorSeconds } from './ceilings.ts';
import { check, MiB, runMeasured } from './measure.ts';
import { AGENT, agentEnv, repoRoot } from './ours.ts';
import type { TargetResult } from './report.ts';
import { type ResticTarget, resticEnv } from './restic.ts';

export interface RestoreMeasurement {
  readonly seconds: number;
  readonly mbps: number;
  readonly peakRssMiB: number | undefined;
  /** User plus system CPU seconds (ours only). */
  readonly cpuSeconds?: number;
  /** Bytes read from the safe (ours only). */
  readonly fetchedBytes?: number;
  /** Bytes written to the target (ours only). */
  readonly writtenBytes?: number;
}

export type RestoreOutcome = RestoreMeasurement | { readonly error: string };

export interface RestoreRow {
  readonly target: 'local' | 'S3';
  readonly ours?: RestoreOutcome;
  readonly restic?: RestoreOutcome;
  readonly delta?: RestoreOutcome;
}

async function oursRestore(
  safe: string,
  env: NodeJS.ProcessEnv,
  to: string,
  imageBytes: number,
): Promise<RestoreMeasurement> {
  const r = await runMeasured(
    AGENT,
    ['restore', '--safe', safe, '--device', 'disk.img', '--rp', 'latest', '--to', to, '--json'],
    { cwd: repoRoot, env: agentEnv(env) },
  );
  check(r, 'cdp-agent restore');
  const out = JSON.parse(r.stdout) as { fetchedBytes: number; writtenBytes: number };
  return {
    seconds: r.seconds,
    mbps: imageBytes / 1e6 / r.seconds,
    peakRssMiB: r.peakRssMiB,
    cpuSeconds: r.cpuSeconds,
    fetchedBytes: out.fetchedBytes,
    writtenBytes: out.writtenBytes,
  };
}

async function resticRestore(t: ResticTarget, dir: string, imageBytes: number): Promise<RestoreMeasurement> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const r = await runMeasured('restic', [...t.options, 'restore', 'latest', '--target', dir], {
    env: resticEnv(t),
  });
  check(r, 'restic restore');
  // restic leaves the restored file in the page cache; ours fsyncs it before reporting success.
  // Time a sync after restic too, so both figures mean "restored and on disk".
  const t0 = performance.now();
  spawnSync('sync');
  const seconds = r.seconds + (performance.now() - t0) / 1000;
  return { seconds, mbps: imageBytes / 1e6 / seconds, peakRssMiB: r.peakRssMiB };
}

const attempt = async (f: () => Promise<RestoreMeasurement>): Promise<RestoreOutcome> => {
  spawnSync('sync'); // earlier runs' dirty pages must not compete with this one's writes
  try {
    return await f();
  } catch (e) {
    return { error: (e as Error).message };
  }
};

/** Runs the three restore measurements for one target. `previous` is the image at the previous RP. */
export async function restorePhase(
  target: 'local' | 'S3',
  ours: { safe: string; env: NodeJS.ProcessEnv } | undefined,
  restic: ResticTarget | undefined,
  previous: string,
  workDir: string,
  imageBytes: number,
  log: (m: string) => void,
): Promise<RestoreRow> {
  const dir = join(workDir, `restore-${target}`);
  mkdirSync(dir, { recursive: true });
  const row: {
    target: 'local' | 'S3';
    ours?: RestoreOutcome;
    restic?: RestoreOutcome;
    delta?: RestoreOutcome;
  } = { target };
  const show = (what: string, o: RestoreOutcome): void =>
    log(
      'error' in o
        ? `${what}: ERROR ${o.error}`
        : `${what}: ${o.seconds.toFixed(2)} s, ${o.mbps.toFixed(0)} MB/s${o.fetchedBytes !== undefined ? `, fetched ${MiB(o.fetchedBytes).toFixed(1)} MiB` : ''}`,
    );
  if (ours) {
    log(`ours restore ${target} ...`);
    row.ours = await attempt(() => oursRestore(ours.safe, ours.env, join(dir, 'ours.img'), imageBytes));
    show(`ours restore ${target}`, row.ours);
    rmSync(join(dir, 'ours.img'), { force: true });
    const stale = join(dir, 'delta.img');
    copyFileSync(previous, stale);
    log(`ours delta restore ${target} ...`);
    row.delta = await attempt(() => oursRestore(ours.safe, ours.env, stale, imageBytes));
    show(`ours delta restore ${target}`, row.delta);
    rmSync(stale, { force: true });
  }
  if (restic) {
    log(`restic restore ${target} ...`);
    row.restic = await attempt(() => resticRestore(restic, join(dir, 'restic'), imageBytes));
    show(`restic restore ${target}`, row.restic);
    rmSync(join(dir, 'restic'), { recursive: true, force: true });
  }
  return row;
}

const ok = (o: RestoreOutcome | undefined): o is RestoreMeasurement => o !== undefined && !('error' in o);

/**
 * The floor of our restore on this machine: from the embedded S3, the bytes it fetched at moto's
 * best download rate, and at least the CPU of the same restore from a directory (the local row
 * of this run; bench/ceilings.ts s3FloorSeconds); from a directory, the disk's time for its reads
 * and writes at once.
 */
function floorSeconds(r: RestoreRow, rows: readonly RestoreRow[], ceilings: Ceilings): number | undefined {
  if (!ok(r.ours)) return undefined;
  if (r.target === 'local') return ceilings.disk?.seconds;
  const local = rows.find((x) => x.target === 'local')?.ours;
  return s3FloorSeconds(ceilings, 'get', r.ours.fetchedBytes ?? 0, ok(local) ? local.cpuSeconds : undefined);
}

/** Prints the restore table and returns the issue's targets with their status. */
export function printRestoreReport(
  rows: RestoreRow[],
  changedBytes: number,
  ceilings: Ceilings,
): TargetResult[] {
  const f = (o: RestoreOutcome | undefined, g: (m: RestoreMeasurement) => string): string =>
    o === undefined ? '-' : ok(o) ? g(o) : `error: ${o.error.slice(0, 60)}…`;
  console.log('\n## Restore of the latest RP (ratio = ours / restic MB/s)\n');
  console.log(
    '| from | ours MB/s | restic MB/s | ratio | ours s | restic s | ours peak RSS MiB | restic peak RSS MiB | delta restore s | delta fetched MiB |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  const targets: TargetResult[] = [];
  for (const r of rows) {
    const q = ok(r.ours) && ok(r.restic) ? r.ours.mbps / r.restic.mbps : undefined;
    console.log(
      `| ${r.target} | ${f(r.ours, (m) => m.mbps.toFixed(0))} | ${f(r.restic, (m) => m.mbps.toFixed(0))} | ${q === undefined ? '-' : `${q.toFixed(2)}x`} | ` +
        `${f(r.ours, (m) => m.seconds.toFixed(2))} | ${f(r.restic, (m) => m.seconds.toFixed(2))} | ${f(r.ours, (m) => String(m.peakRssMiB?.toFixed(0)))} | ` +
        `${f(r.restic, (m) => String(m.peakRssMiB?.toFixed(0)))} | ${f(r.delta, (m) => m.seconds.toFixed(2))} | ${f(r.delta, (m) => MiB(m.fetchedBytes ?? 0).toFixed(1))} |`,
    );
    const need = r.target === 'local' ? 3.5 : 2;
    const floor = floorSeconds(r, rows, ceilings);
    targets.push({
      target: `restore ${r.target}: ≥ ${need}x restic`,
      measured: q === undefined ? 'n/a' : `${q.toFixed(2)}x`,
      pass: q === undefined ? undefined : q >= need,
      need,
      bound: floor !== undefined && ok(r.restic) ? boundRatio(r.restic.seconds, floor) : undefined,
    });
    const fetchedRatio = ok(r.delta) ? (r.delta.fetchedBytes ?? 0) / changedBytes : undefined;
    targets.push({
      target: `delta restore ${r.target}: fetched ≤ 1.5x the changed blocks (${MiB(changedBytes).toFixed(1)} MiB at 64 KiB)`,
      measured: fetchedRatio === undefined ? 'n/a' : `${fetchedRatio.toFixed(2)}x`,
      pass: fetchedRatio === undefined ? undefined : fetchedRatio <= 1.5,
    });
  }
  return targets;
}
