/**
 * Helpers for the trust scenarios (issue 15): each scenario drives the real `cdp-agent` CLI against
 * directory safes, as a user or a scheduler would, and checks every recovery point byte for byte.
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { agent, type CliResult } from '../support/agent-cli.ts';

export const MiB = 1024 * 1024;

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `${prefix}-`));
}

/** A random image whose bytes are drawn from `seed` (printed by the tests that use one). */
export function seededBytes(seed: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  let block = Buffer.alloc(0);
  for (let o = 0, n = 0; o < length; o += 32, n++) {
    block = createHash('sha256').update(`${seed}:${n}`).digest();
    block.copy(out, o, 0, Math.min(32, length - o));
  }
  return out;
}

/** The seed of every image `fresh` draws in this file's run: SCENARIO_SEED replays one. */
export const SCENARIO_SEED = Number(process.env.SCENARIO_SEED ?? randomBytes(4).readUInt32LE(0));
console.log(`scenario images: SCENARIO_SEED=${SCENARIO_SEED}`);
let drawn = 0;

/** Incompressible bytes, the next draw from SCENARIO_SEED (an AES-256-CTR keystream). */
export function fresh(length: number): Buffer {
  const key = createHash('sha256').update(`scenario:${SCENARIO_SEED}:${drawn++}`).digest();
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(length));
}

/** The JSON a command printed on stdout (its last line), or undefined. */
export function jsonOut(r: CliResult): Record<string, unknown> | undefined {
  const text = r.stdout.trim();
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    const last = text.split('\n').pop()!;
    try {
      return JSON.parse(last);
    } catch {
      return undefined;
    }
  }
}

export interface Safe {
  readonly dir: string;
  readonly stateDir: string;
  backup(device: string, ...more: string[]): Promise<CliResult>;
  restore(rp: string, to: string, ...more: string[]): Promise<CliResult>;
  verify(...more: string[]): Promise<CliResult>;
  list(...more: string[]): Promise<CliResult>;
  compact(...more: string[]): Promise<CliResult>;
  policy(...more: string[]): Promise<CliResult>;
  /** sha256 of the device image restored at `rp` (the command must succeed). */
  restoredSha(rp: number | string, device?: string): Promise<string>;
}

export function safeAt(
  root: string,
  name = 'safe1',
  deviceId = 'disk',
  stateDir = join(root, `state-${name}`),
): Safe {
  const dir = join(root, name);
  const s: Safe = {
    dir,
    stateDir,
    backup: (device, ...more) =>
      agent([
        'backup',
        '--safe',
        dir,
        '--device',
        `${device}=${deviceId}`,
        '--state-dir',
        stateDir,
        '--json',
        ...more,
      ]),
    restore: (rp, to, ...more) =>
      agent(['restore', '--safe', dir, '--device', deviceId, '--rp', rp, '--to', to, '--json', ...more]),
    verify: (...more) => agent(['verify', '--safe', dir, '--json', ...more]),
    list: (...more) => agent(['list', '--safe', dir, '--json', ...more]),
    compact: (...more) => agent(['compact', '--safe', dir, '--state-dir', stateDir, '--json', ...more]),
    policy: (...more) => agent(['policy', '--safe', dir, '--json', ...more]),
    async restoredSha(rp, device = deviceId) {
      const to = join(root, `restored-${name}-${device}-${rp}-${randomBytes(4).toString('hex')}.img`);
      const r = await agent([
        'restore',
        '--safe',
        dir,
        '--device',
        device,
        '--rp',
        String(rp),
        '--to',
        to,
        '--json',
      ]);
      if (r.code !== 0) throw new Error(`restore of RP ${rp} failed (exit ${r.code}): ${r.stderr}`);
      return sha256(readFileSync(to));
    },
  };
  return s;
}

/** Every file below `dir`, relative, with its size. */
export function files(dir: string): Map<string, number> {
  const out = new Map<string, number>();
  const walk = (d: string, rel: string): void => {
    if (!existsSync(d)) return;
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      const st = statSync(p);
      if (st.isDirectory()) walk(p, rel ? `${rel}/${n}` : n);
      else out.set(rel ? `${rel}/${n}` : n, st.size);
    }
  };
  walk(dir, '');
  return out;
}

/** Files under a safe directory's folder (`seg`, `map`, `rp`, `gen`, …). */
export function filesUnder(dir: string, folder: string): string[] {
  return [...files(join(dir, folder)).keys()].map((k) => `${folder}/${k}`);
}

export function writeImage(path: string, img: Buffer): void {
  writeFileSync(path, img);
}
