/**
 * `node bench/sparse.ts`: peak RSS and speed of a full backup of large sparse images (a mostly
 * empty disk), to a local directory. The agent reads every byte (it does not look for holes), so
 * the run time grows with the image size; the peak RSS must not.
 * Flags: --size-gib 64,256,1024 (each size is one image and one run), --data-mib N (4096, written
 * in --regions N (64) runs scattered over the image), --seed N (1), --incr (also an incremental
 * run with nothing changed), --keep (leave the images and safes).
 * Results: bench/results/sparse-latest.json and a table on stdout.
 */

import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildAgent } from '../scripts/build-agent.ts';
import { makeSparseImage, type SparseImageInfo } from './images.ts';
import { dirBytes, MiB } from './measure.ts';
import { type Measurement, oursBackup, repoRoot } from './ours.ts';

const { values: flags } = parseArgs({
  options: {
    'size-gib': { type: 'string', default: '64,256,1024' },
    'data-mib': { type: 'string', default: '4096' },
    regions: { type: 'string', default: '64' },
    seed: { type: 'string', default: '1' },
    incr: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
});
const sizes = flags['size-gib'].split(',').map(Number);
const dataMiB = Number(flags['data-mib']);
const regions = Number(flags.regions);
const seed = Number(flags.seed);
if (sizes.some((s) => !Number.isInteger(s) || s < 1)) throw new Error('--size-gib: integers >= 1');

const log = (m: string) => console.error(`[bench sparse] ${m}`);
const benchDir = import.meta.dirname;
const workDir = join(benchDir, 'work', 'sparse');

interface SparseRow {
  readonly sizeGiB: number;
  readonly image: SparseImageInfo;
  readonly full: Measurement;
  readonly incr?: Measurement;
}

function summary(what: string, m: Measurement): string {
  return (
    `${what}: ${m.seconds.toFixed(1)} s, ${m.mbps.toFixed(0)} MB/s, stored ${MiB(m.storedBytes).toFixed(1)} MiB, ` +
    `peak RSS ${m.peakRssMiB?.toFixed(0) ?? '?'} MiB`
  );
}

async function main(): Promise<void> {
  const loadStart = loadavg()[0]!;
  log(`agent bundle: ${await buildAgent()}`);
  mkdirSync(workDir, { recursive: true });
  const rows: SparseRow[] = [];
  for (const sizeGiB of sizes) {
    const path = join(workDir, `sparse-${sizeGiB}g-${dataMiB}m-seed${seed}.img`);
    const run = join(workDir, `run-${sizeGiB}g`);
    rmSync(run, { recursive: true, force: true });
    try {
      log(`creating a ${sizeGiB} GiB sparse image with ${dataMiB} MiB of data in ${regions} runs`);
      const image = makeSparseImage(sizeGiB, dataMiB, regions, path, seed);
      const bytes = statSync(path).size;
      const target = {
        safe: join(run, 'safes', 'sparse'),
        stateDir: join(run, 'state'),
        env: {},
        store: { describe: 'dir', bytes: async () => dirBytes(join(run, 'safes', 'sparse')) },
      };
      log(`full backup of ${sizeGiB} GiB ...`);
      const full = await oursBackup(target, path, bytes);
      log(summary(`full ${sizeGiB} GiB`, full));
      let incr: Measurement | undefined;
      if (flags.incr) {
        log(`incremental (nothing changed) of ${sizeGiB} GiB ...`);
        incr = await oursBackup(target, path, bytes);
        log(summary(`incr ${sizeGiB} GiB`, incr));
      }
      rows.push({ sizeGiB, image, full, incr });
    } finally {
      if (!flags.keep) {
        rmSync(run, { recursive: true, force: true });
        rmSync(path, { force: true });
      }
    }
  }

  const head = ['image GiB', 'data MiB', 'run', 'seconds', 'MB/s', 'stored MiB', 'peak RSS MiB'];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const r of rows) {
    for (const [kind, m] of [
      ['full', r.full],
      ['incr', r.incr],
    ] as const) {
      if (!m) continue;
      lines.push(
        `| ${[r.sizeGiB, MiB(r.image.data).toFixed(0), kind, m.seconds.toFixed(1), m.mbps.toFixed(0), MiB(m.storedBytes).toFixed(1), m.peakRssMiB?.toFixed(0) ?? '?'].join(' | ')} |`,
      );
    }
  }
  console.log(`\n## cdp-agent backup of sparse images (local directory safe)\n`);
  console.log(lines.join('\n'));
  const rss = rows.flatMap((r) => [r.full.peakRssMiB, r.incr?.peakRssMiB]).filter((v) => v !== undefined);
  const largest = rows[rows.length - 1];
  if (largest && rss.length) {
    const peak = Math.max(...rss);
    console.log(
      `\npeak RSS over all runs: ${peak.toFixed(0)} MiB (target ≤ 256 MiB at 1 TiB; largest image measured: ${largest.sizeGiB} GiB): ${peak <= 256 ? 'PASS' : 'FAIL'}`,
    );
  }
  mkdirSync(join(benchDir, 'results'), { recursive: true });
  const out = join(benchDir, 'results', 'sparse-latest.json');
  const meta = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    loadAvg1m: { start: loadStart, end: loadavg()[0] },
    dataMiB,
    regions,
    seed,
  };
  writeFileSync(out, `${JSON.stringify({ ...meta, rows }, null, 2)}\n`);
  log(`results written to ${out.replace(`${repoRoot}/`, '')}`);
}

await main();
