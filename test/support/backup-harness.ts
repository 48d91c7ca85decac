/** Runs the backup use case against a directory safe with test-friendly settings. */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { FsObjectStore } from '#adapters/fs-store.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import { type BackupInput, type BackupResult, runBackup } from '../../agent/backup/run-backup.ts';

export interface Harness {
  readonly store: ObjectStore;
  readonly safe: string;
  readonly stateDir: string;
  backup(input: BackupInput): Promise<BackupResult>;
}

export function harness(
  root: string,
  safe = 'test-safe',
  store?: ObjectStore,
  agentId = 'agent-1',
  now?: () => Date,
): Harness {
  const s = store ?? new FsObjectStore(join(root, 'safe'), safe);
  const stateDir = join(root, 'state');
  mkdirSync(stateDir, { recursive: true });
  return {
    store: s,
    safe,
    stateDir,
    backup: (input) =>
      runBackup(
        {
          store: s,
          safe,
          stateDir,
          agent: { id: agentId, version: 'test', host: 'test' },
          runHook: async () => undefined,
          now,
        },
        { workers: 1, segmentBytes: 64 * 1024, ...input },
      ),
  };
}
