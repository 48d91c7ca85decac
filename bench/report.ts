/** The side-by-side markdown table (ours / restic) and the issue's targets. */
import { boundRatio, type Ceilings, s3FloorSeconds } from './ceilings.ts';
import { MiB } from './measure.ts';
import type { Measurement } from './ours.ts';

export type Outcome = Measurement | { readonly error: string };

export interface Row {
  readonly label: string;
  readonly kind: 'full' | 'incr';
  readonly target: 'local' | 'S3';
  readonly ours: Outcome | undefined;
  readonly restic: Outcome | undefined;
}

export interface TargetResult {
  readonly target: string;
  readonly measured: string;
  readonly pass: boolean | undefined;
  /** The ratio the target asks for, when it is one. */
  readonly need?: number;
  /** The best ratio any agent could reach on this machine (bench/ceilings.ts), where one is measured. */
  readonly bound?: number;
}

/** A targets table; a failed target whose bound is below what it asks is marked out of reach. */
export function printTargets(title: string, targets: readonly TargetResult[]): void {
  console.log(`\n## ${title}\n`);
  console.log('| target | measured | best possible here | status |\n|---|---|---|---|');
  for (const t of targets) {
    const outOfReach = t.bound !== undefined && t.need !== undefined && t.bound < t.need;
    const status =
      t.pass === undefined ? 'n/a' : t.pass ? 'PASS' : outOfReach ? 'FAIL (out of reach here)' : 'FAIL';
    const bound = t.bound === undefined ? '-' : `≤ ${t.bound.toFixed(2)}x`;
    console.log(`| ${t.target} | ${t.measured} | ${bound} | ${status} |`);
  }
}

const ok = (o: Outcome | undefined): o is Measurement => o !== undefined && !('error' in o);
const clean = (s: string) => s.replace(/\|/g, '/').replace(/\s+/g, ' ');

function cell(o: Outcome | undefined, f: (m: Measurement) => number | undefined, digits = 0): string {
  if (o === undefined) return '-';
  if (!ok(o)) return `error: ${clean(o.error).slice(0, 60)}…`;
  const v = f(o);
  return v === undefined ? '?' : v.toFixed(digits);
}

function ratio(r: Row): number | undefined {
  return ok(r.ours) && ok(r.restic) ? r.ours.mbps / r.restic.mbps : undefined;
}

/**
 * The floor of a run on this machine, where a ceiling bounds it: a full backup to the embedded S3
 * uploads its stored bytes (bench/ceilings.ts s3FloorSeconds), and needs at least the CPU of the
 * same backup to a directory (the local row of this run).
 */
function floorSeconds(r: Row, rows: readonly Row[], ceilings: Ceilings): number | undefined {
  if (r.target !== 'S3' || r.kind !== 'full' || !ok(r.ours)) return undefined;
  const local = rows.find((x) => x.target === 'local' && x.kind === r.kind)?.ours;
  return s3FloorSeconds(ceilings, 'put', r.ours.storedBytes, ok(local) ? local.cpuSeconds : undefined);
}

/** Prints the tables on stdout and returns the targets' evaluation. */
export function printReport(rows: Row[], sizeMiB: number, ceilings: Ceilings): TargetResult[] {
  const head = [
    'run',
    'ours MB/s',
    'restic MB/s',
    'ratio',
    'ours stored MiB',
    'restic stored MiB',
    'ours peak RSS MiB',
    'restic peak RSS MiB',
    'ours s',
    'restic s',
  ];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const r of rows) {
    const q = ratio(r);
    lines.push(
      `| ${[
        r.label,
        cell(r.ours, (m) => m.mbps),
        cell(r.restic, (m) => m.mbps),
        q === undefined ? '-' : `${q.toFixed(2)}x`,
        cell(r.ours, (m) => MiB(m.storedBytes), 1),
        cell(r.restic, (m) => MiB(m.storedBytes), 1),
        cell(r.ours, (m) => m.peakRssMiB),
        cell(r.restic, (m) => m.peakRssMiB),
        cell(r.ours, (m) => m.seconds, 2),
        cell(r.restic, (m) => m.seconds, 2),
      ].join(' | ')} |`,
    );
  }
  console.log(`\n## cdp-agent vs restic, ${sizeMiB} MiB image, 1% mutation (ratio = ours / restic MB/s)\n`);
  console.log(lines.join('\n'));

  const targets: TargetResult[] = [];
  for (const r of rows) {
    const q = ratio(r);
    const need = r.kind === 'full' ? 4 : 5;
    const floor = floorSeconds(r, rows, ceilings);
    targets.push({
      target: `${r.kind === 'full' ? 'full' : 'incremental'} ${r.target}: ≥ ${need}x restic`,
      measured: q === undefined ? 'n/a' : `${q.toFixed(2)}x`,
      pass: q === undefined ? undefined : q >= need,
      need,
      bound: floor !== undefined && ok(r.restic) ? boundRatio(r.restic.seconds, floor) : undefined,
    });
  }
  for (const r of rows.filter((x) => x.kind === 'incr')) {
    targets.push({
      target: `stored for the 1% (${r.target}) ≤ 70 MiB`,
      measured: ok(r.ours) ? `${MiB(r.ours.storedBytes).toFixed(1)} MiB` : 'n/a',
      pass: ok(r.ours) ? MiB(r.ours.storedBytes) <= 70 : undefined,
    });
  }
  const rss = rows.map((r) => (ok(r.ours) ? r.ours.peakRssMiB : undefined)).filter((v) => v !== undefined);
  const peak = rss.length ? Math.max(...rss) : undefined;
  targets.push({
    target: `peak RSS ≤ 128 MiB at 2 GiB (max over runs${sizeMiB === 2048 ? '' : `, image is ${sizeMiB} MiB`})`,
    measured: peak === undefined ? 'n/a' : `${peak.toFixed(0)} MiB`,
    pass: peak === undefined ? undefined : peak <= 128,
  });
  printTargets('Targets (issue 3)', targets);

  const errors = rows.flatMap((r) =>
    (['ours', 'restic'] as const).flatMap((tool) => {
      const o = r[tool];
      return o && !ok(o) ? [`- ${tool} ${r.label}: ${o.error}`] : [];
    }),
  );
  if (errors.length) console.log(`\n## Errors\n\n${errors.join('\n')}`);
  return targets;
}
