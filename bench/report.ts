/** The side-by-side markdown table (ours / restic) and the issue's targets. */
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

/** Prints the tables on stdout and returns the targets' evaluation. */
export function printReport(rows: Row[], sizeMiB: number): TargetResult[] {
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
    targets.push({
      target: `${r.kind === 'full' ? 'full' : 'incremental'} ${r.target}: ≥ ${need}x restic`,
      measured: q === undefined ? 'n/a' : `${q.toFixed(2)}x`,
      pass: q === undefined ? undefined : q >= need,
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
  console.log('\n## Targets (issue)\n');
  console.log('| target | measured | status |\n|---|---|---|');
  for (const t of targets)
    console.log(
      `| ${t.target} | ${t.measured} | ${t.pass === undefined ? 'n/a' : t.pass ? 'PASS' : 'FAIL'} |`,
    );

  const errors = rows.flatMap((r) =>
    (['ours', 'restic'] as const).flatMap((tool) => {
      const o = r[tool];
      return o && !ok(o) ? [`- ${tool} ${r.label}: ${o.error}`] : [];
    }),
  );
  if (errors.length) console.log(`\n## Errors\n\n${errors.join('\n')}`);
  return targets;
}
