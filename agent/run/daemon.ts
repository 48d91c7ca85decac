/**
 * `cdp-agent run`: continuous protection. A capture loop takes an RP of every configured safe each
 * interval (the RPO) into its primary safe; a replication loop, woken after every capture, copies
 * new RPs to every destination. Capture never waits for the network. SIGTERM/SIGINT finish the
 * step in progress and exit (a second signal exits at once); state lives in the safes and the
 * state directory, so a restart goes on where it stopped. A status file is rewritten after every
 * step (atomically).
 */
import { renameSync, writeFileSync } from 'node:fs';
import { parseRate, RateLimiter } from '../backup/rate-limiter.ts';
import { backupCommand } from '../commands/backup.ts';
import { replicatePair } from '../commands/replicate.ts';
import { parseDuration, type RunConfig } from './config.ts';

export interface SafeStatus {
  safe: string;
  lastBackupAt?: string;
  lastBackupOk?: boolean;
  lastBackupError?: string;
  destinations: Record<
    string,
    { lastRunAt?: string; newestRp?: number | null; copiedRps?: number[]; lastError?: string }
  >;
}

export interface DaemonStatus {
  pid: number;
  startedAt: string;
  updatedAt: string;
  interval: string;
  safes: SafeStatus[];
}

export interface Daemon {
  readonly status: DaemonStatus;
  stop(): void;
  /** Resolves when both loops have ended after stop(). */
  readonly done: Promise<void>;
}

export function startDaemon(
  cfg: RunConfig,
  log: (event: Record<string, unknown>) => void = (e) => console.log(JSON.stringify(e)),
): Daemon {
  const intervalMs = parseDuration(cfg.interval);
  const status: DaemonStatus = {
    pid: process.pid,
    startedAt: new Date().toISOString(),
    updatedAt: new Date().toISOString(),
    interval: cfg.interval,
    safes: cfg.safes.map((s) => ({
      safe: s.safe,
      destinations: Object.fromEntries(s.replicateTo.map((d) => [d, {}])),
    })),
  };
  const writeStatus = (): void => {
    status.updatedAt = new Date().toISOString();
    if (!cfg.statusFile) return;
    const tmp = `${cfg.statusFile}.tmp-${process.pid}`;
    writeFileSync(tmp, `${JSON.stringify(status, null, 1)}\n`);
    renameSync(tmp, cfg.statusFile);
  };
  let stopping = false;
  let wake: (() => void) | undefined;
  let sleeper: { timer: NodeJS.Timeout; resolve: () => void } | undefined;
  let replicationWanted = true;
  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      sleeper = { timer: setTimeout(resolve, ms), resolve };
    });
  const limiters = cfg.safes.map((s) => (s.bwlimit ? new RateLimiter(parseRate(s.bwlimit)) : undefined));

  const captureLoop = async (): Promise<void> => {
    while (!stopping) {
      const t0 = Date.now();
      for (const [i, s] of cfg.safes.entries()) {
        if (stopping) break;
        const st = status.safes[i]!;
        try {
          const code = await backupCommand({
            safe: s.safe,
            device: s.devices,
            blockSize: s.blockSize,
            encryptKeyFile: s.encryptKeyFile,
            preSnapshot: s.preSnapshot,
            postSnapshot: s.postSnapshot,
            stateDir: cfg.stateDir,
            changedList: Object.entries(s.changedLists ?? {}).map(([id, file]) => `${id}=${file}`),
            json: true,
          });
          st.lastBackupOk = code === 0;
          st.lastBackupError = undefined;
        } catch (e) {
          st.lastBackupOk = false;
          st.lastBackupError = (e as Error).message;
          log({ event: 'backup-failed', safe: s.safe, error: st.lastBackupError });
        }
        st.lastBackupAt = new Date().toISOString();
        writeStatus();
      }
      replicationWanted = true;
      wake?.();
      if (!stopping) await sleep(Math.max(0, intervalMs - (Date.now() - t0)));
    }
  };

  const replicationLoop = async (): Promise<void> => {
    while (!stopping || replicationWanted) {
      if (!replicationWanted) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
        continue;
      }
      replicationWanted = false;
      for (const [i, s] of cfg.safes.entries()) {
        for (const dest of s.replicateTo) {
          const d = status.safes[i]!.destinations[dest]!;
          try {
            const r = await replicatePair(s.safe, dest, limiters[i]);
            d.newestRp = r.newestRp;
            d.copiedRps = r.copiedRps;
            d.lastError = undefined;
            if (r.copiedRps.length)
              log({ event: 'replicated', safe: s.safe, to: dest, rps: r.copiedRps, bytes: r.copiedBytes });
          } catch (e) {
            d.lastError = (e as Error).message;
            log({ event: 'replication-failed', safe: s.safe, to: dest, error: d.lastError });
          }
          d.lastRunAt = new Date().toISOString();
          writeStatus();
        }
      }
      if (stopping) break;
    }
  };

  writeStatus();
  const done = Promise.all([captureLoop(), replicationLoop()]).then(() => {
    writeStatus();
    log({ event: 'stopped' });
  });
  return {
    status,
    done,
    stop() {
      stopping = true;
      if (sleeper) {
        clearTimeout(sleeper.timer);
        sleeper.resolve();
      }
      wake?.();
    },
  };
}
