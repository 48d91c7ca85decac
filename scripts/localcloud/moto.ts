/**
 * The embedded local cloud: a moto server from the project's virtualenv (scripts/cloud/install.sh),
 * started on a free localhost port, health-checked, reset and stopped by PID (never by name).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { projectRoot } from './paths.ts';

export const MOTO_SERVER = join(projectRoot, '.venv', 'bin', 'moto_server');

export interface MotoServer {
  readonly endpoint: string;
  readonly port: number;
  readonly pid: number;
}

/** A port the kernel considers free right now (there is a small race until moto binds it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** True when the moto API answers at `endpoint`. */
export async function isHealthy(endpoint: string): Promise<boolean> {
  try {
    const r = await fetch(`${endpoint}/moto-api/`, { signal: AbortSignal.timeout(2000) });
    await r.arrayBuffer();
    return r.ok;
  } catch {
    return false;
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** True when `pid` is alive and its command line is a moto server (guards against a recycled PID). */
export function isMotoProcess(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('moto_server');
  } catch {
    return isAlive(pid);
  }
}

export interface StartOptions {
  /** Port to use; a free one is picked when absent. */
  readonly port?: number;
  /** File receiving the server's output; discarded when absent. */
  readonly logFile?: string;
  /** Detach so the server outlives this process (the `cloud start` command). */
  readonly detached?: boolean;
  readonly readyTimeoutMs?: number;
}

/** Starts a moto server and waits until it answers; retries on another port if the one picked was taken. */
export async function startMoto(opts: StartOptions = {}): Promise<MotoServer> {
  if (!existsSync(MOTO_SERVER)) {
    throw new Error(`moto server not installed at ${MOTO_SERVER}: run 'npm run cloud:install'`);
  }
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = opts.port ?? (await freePort());
    try {
      return await startOn(port, opts);
    } catch (e) {
      lastError = e;
      if (opts.port) break;
    }
  }
  throw lastError;
}

async function startOn(port: number, opts: StartOptions): Promise<MotoServer> {
  let out: 'ignore' | number = 'ignore';
  if (opts.logFile) {
    mkdirSync(join(opts.logFile, '..'), { recursive: true });
    out = openSync(opts.logFile, 'a');
  }
  const child = spawn(MOTO_SERVER, ['-H', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', out, out],
    detached: opts.detached ?? false,
    env: { ...process.env, MOTO_ALLOW_NONEXISTENT_REGION: 'false' },
  });
  if (opts.detached) child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new Error('moto server did not start');
  let exited: number | null = null;
  child.on('exit', (code) => {
    exited = code ?? -1;
  });
  const endpoint = `http://localhost:${port}`;
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 60_000);
  while (Date.now() < deadline) {
    if (exited !== null)
      throw new Error(`moto server exited with code ${exited} while starting on port ${port}`);
    if (await isHealthy(endpoint)) return { endpoint, port, pid };
    await sleep(100);
  }
  stopMotoPid(pid);
  throw new Error(`moto server on port ${port} did not answer within ${opts.readyTimeoutMs ?? 60_000} ms`);
}

/** Wipes all state of the server (every bucket, table, queue, stack). */
export async function resetMoto(endpoint: string): Promise<void> {
  const r = await fetch(`${endpoint}/moto-api/reset`, { method: 'POST' });
  if (!r.ok) throw new Error(`moto reset failed: HTTP ${r.status}`);
}

/** Stops the server with this PID: SIGTERM, then SIGKILL if it is still there after 3 s. */
export async function stopMoto(pid: number): Promise<void> {
  if (!isAlive(pid)) return;
  if (!isMotoProcess(pid)) throw new Error(`process ${pid} is not a moto server; not stopping it`);
  stopMotoPid(pid);
  const deadline = Date.now() + 3000;
  while (isAlive(pid) && Date.now() < deadline) await sleep(50);
  if (isAlive(pid)) process.kill(pid, 'SIGKILL');
}

function stopMotoPid(pid: number): void {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    /* already gone */
  }
}
