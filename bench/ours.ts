/** Our agent as a child process: `cdp-agent backup --json`, measured like restic. */
import { dirname, join } from 'node:path';
import { check, runMeasured } from './measure.ts';

export const repoRoot = join(import.meta.dirname, '..');
/**
 * The agent as shipped: the bundle `npm ci` builds (run.ts rebuilds it before measuring), run as
 * the `cdp-agent` command runs it, through its #! line (which sets V8 flags); `node` there is this
 * Node (put first on PATH).
 */
export const AGENT = join(repoRoot, 'dist', 'agent', 'cdp-agent.mjs');
export const agentEnv = (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv => ({
  ...process.env,
  ...env,
  PATH: `${dirname(process.execPath)}:${env.PATH ?? process.env.PATH ?? ''}`,
});

/** Where a tool stores its backups, and how big that currently is. */
export interface Store {
  readonly describe: string;
  bytes(): Promise<number>;
}

export interface Measurement {
  readonly seconds: number;
  /** Image bytes / wall seconds, decimal MB. */
  readonly mbps: number;
  /** Growth of the safe / repository caused by this run. */
  readonly storedBytes: number;
  readonly peakRssMiB: number | undefined;
  /** User plus system CPU seconds (undefined where they could not be measured). */
  readonly cpuSeconds?: number;
  /** What the tool itself reported (agent --json line, restic summary). */
  readonly reported: unknown;
}

/** The figures of one measured backup run. */
export function measurement(
  r: {
    readonly seconds: number;
    readonly peakRssMiB: number | undefined;
    readonly cpuSeconds: number | undefined;
  },
  imageBytes: number,
  storedBytes: number,
  reported: unknown,
): Measurement {
  return {
    seconds: r.seconds,
    mbps: imageBytes / 1e6 / r.seconds,
    storedBytes,
    peakRssMiB: r.peakRssMiB,
    cpuSeconds: r.cpuSeconds,
    reported,
  };
}

export interface OursTarget {
  /** The --safe argument. */
  readonly safe: string;
  readonly stateDir: string;
  readonly env: NodeJS.ProcessEnv;
  readonly store: Store;
}

export async function oursBackup(t: OursTarget, image: string, imageBytes: number): Promise<Measurement> {
  const before = await t.store.bytes();
  const r = await runMeasured(
    AGENT,
    ['backup', '--safe', t.safe, '--device', image, '--state-dir', t.stateDir, '--json'],
    { cwd: repoRoot, env: agentEnv(t.env) },
  );
  check(r, 'cdp-agent backup');
  const after = await t.store.bytes();
  let reported: unknown;
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    reported = JSON.parse(line);
  } catch {
    throw new Error(`cdp-agent backup printed no JSON result: ${r.stdout.slice(-300)}`);
  }
  return measurement(r, imageBytes, after - before, reported);
}
