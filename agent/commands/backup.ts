/** `cdp-agent backup`: take one recovery point of one or more devices (a consistency group). */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { CdpError } from '#core/errors.ts';
import { parseKeyFile } from '#core/format/crypto.ts';
import { type DeviceSpec, parseDeviceArg } from '../backup/device.ts';
import { parseRate, RateLimiter } from '../backup/rate-limiter.ts';
import { runBackup } from '../backup/run-backup.ts';
import { progressBar } from '../progress.ts';
import { openSafeLocation } from '../safe-location.ts';
import { agentIdentity, defaultStateDir, safeStateDir } from '../state/agent-state.ts';
import { AGENT_VERSION } from '../version.ts';

export interface BackupOptions {
  readonly safe: string;
  readonly device: string[];
  readonly blockSize?: string;
  readonly encryptKeyFile?: string;
  readonly preSnapshot?: string;
  readonly postSnapshot?: string;
  readonly bwlimit?: string;
  readonly stateDir?: string;
  readonly takeOver?: boolean;
  readonly json?: boolean;
  readonly workers?: string;
  readonly segmentSize?: string;
  /** `ID=FILE`: changed extents of device ID since the last RP. */
  readonly changedList?: string[];
}

function runHook(cmd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, { shell: true, stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', reject);
    child.on('exit', (code, signal) =>
      code === 0
        ? resolve()
        : reject(new CdpError('E_HOOK', `command '${cmd}' failed (${signal ?? `exit ${code}`})`)),
    );
  });
}

function parseSize(s: string): number {
  const m = /^(\d+)\s*([kKmMgG]?)(?:i?B)?$/.exec(s.trim());
  if (!m) throw new CdpError('E_USAGE', `bad size '${s}' (examples: 64k, 64KiB, 65536, 32M)`);
  return (
    Number(m[1]) * { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g']
  );
}

/** Attaches each `ID=FILE` changed list to its device. */
function withChangedLists(devices: DeviceSpec[], lists: string[]): DeviceSpec[] {
  const byId = new Map<string, string>();
  for (const l of lists) {
    const eq = l.indexOf('=');
    if (eq <= 0) throw new CdpError('E_USAGE', `--changed-list ${l}: give ID=FILE`);
    byId.set(l.slice(0, eq), l.slice(eq + 1));
  }
  for (const id of byId.keys()) {
    if (!devices.some((d) => d.id === id))
      throw new CdpError('E_USAGE', `--changed-list ${id}=…: no --device has id ${id}`);
  }
  return devices.map((d) => {
    const file = byId.get(d.id);
    return file ? { ...d, changedFile: file } : d;
  });
}

export async function backupCommand(o: BackupOptions): Promise<number> {
  const loc = await openSafeLocation(o.safe);
  if (loc.warning && !o.json) console.error(`warning: ${loc.warning}`);
  const stateDir = o.stateDir ?? defaultStateDir();
  const agent = agentIdentity(stateDir);
  const bar = progressBar(!o.json);
  let key: Buffer | undefined;
  if (o.encryptKeyFile) {
    try {
      key = parseKeyFile(readFileSync(o.encryptKeyFile));
    } catch (e) {
      throw new CdpError('E_USAGE', `--encrypt-key-file ${o.encryptKeyFile}: ${(e as Error).message}`);
    }
  }
  const t0 = performance.now();
  try {
    const r = await runBackup(
      {
        store: loc.store,
        safe: loc.safe,
        stateDir: safeStateDir(stateDir, loc.store.location),
        agent: { id: agent.id, version: AGENT_VERSION, host: hostname() },
        runHook,
        onProgress: (p) => bar.update(p.device, p.scanned, p.total),
        log: (m) => {
          if (!o.json) console.error(m);
        },
      },
      {
        devices: withChangedLists(o.device.map(parseDeviceArg), o.changedList ?? []),
        blockSize: o.blockSize ? parseSize(o.blockSize) : undefined,
        key,
        preSnapshot: o.preSnapshot,
        postSnapshot: o.postSnapshot,
        limiter: o.bwlimit ? new RateLimiter(parseRate(o.bwlimit)) : undefined,
        workers: o.workers ? Number(o.workers) : undefined,
        segmentBytes: o.segmentSize ? parseSize(o.segmentSize) : undefined,
        takeOver: o.takeOver,
      },
    );
    bar.stop();
    const secs = (performance.now() - t0) / 1000;
    const s = r.manifest.stats;
    if (o.json) {
      console.log(
        JSON.stringify({
          safe: loc.store.location,
          rp: r.rp,
          parent: r.parent,
          seconds: secs,
          stats: s,
          devices: r.manifest.devices,
          rebuiltState: r.rebuiltState,
          notes: r.notes,
        }),
      );
    } else {
      const mb = (n: number) => (n / 2 ** 20).toFixed(1);
      console.log(
        `RP ${r.rp} committed to ${loc.store.location} (${r.parent ? `incremental on RP ${r.parent}` : 'full'}): ` +
          `scanned ${mb(s.scannedBytes)} MiB, changed ${mb(s.changedBytes)} MiB, stored ${mb(s.storedBytes)} MiB ` +
          `in ${secs.toFixed(1)} s (${(s.scannedBytes / 1e6 / secs).toFixed(0)} MB/s)`,
      );
    }
    return 0;
  } finally {
    bar.stop();
  }
}
