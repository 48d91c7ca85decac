/**
 * Compaction bench (issue 6): 30 simulated days of hourly RPs at 1% scattered change per hour on
 * one image (in process, with the mutation's changed list so each hour reads only what changed),
 * into a directory safe; then one compaction with a 24-hourly / 7-daily / 4-weekly policy and a
 * garbage-collection pass after the grace period. Measures:
 * - stored bytes with compaction against the same history without it (the safe before compaction);
 * - compaction throughput: GiB merged (the changed bytes of the expired RPs) per minute, in one
 *   process (what one Lambda invocation does when the job is not fanned out);
 * - object-store requests (S3-equivalent: a streamed segment counts its 5 MiB parts) and catalog
 *   writes per GiB merged;
 * - restore time of the oldest retained RP before and after compaction (chain length too).
 * Flags: --size-mib N (256), --days N (30), --seed N (1).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FsObjectStore } from '../adapters/fs-store.ts';
import { runBackup } from '../agent/backup/run-backup.ts';
import { localPages } from '../agent/restore/plans.ts';
import { runRestore } from '../agent/restore/run-restore.ts';
import { StoreSource } from '../agent/restore/segment-source.ts';
import { compactSafe } from '../core/compaction/compact.ts';
import type { StoredPolicy } from '../core/format/generation.ts';
import type { ObjectInfo, ObjectStore, ObjectTail, ObjectWriter } from '../core/ports/object-store.ts';
import { planRetention } from '../core/retention.ts';
import { SafeReader } from '../core/safe-reader.ts';
import { makeImage, mutateImage } from './images.ts';
import { dirBytes } from './measure.ts';

const MiB = 2 ** 20;

const PART = 5 * MiB;

/** Counts requests as S3 would bill them (a streamed object: one request per 5 MiB part + 2). */
export class CountingStore implements ObjectStore {
  readonly location: string;
  readonly counts: Record<string, number> = {};
  private readonly inner: ObjectStore;
  constructor(inner: ObjectStore) {
    this.inner = inner;
    this.location = inner.location;
  }
  private n(op: string, k = 1): void {
    this.counts[op] = (this.counts[op] ?? 0) + k;
  }
  total(): number {
    return Object.values(this.counts).reduce((a, b) => a + b, 0);
  }
  get(key: string): Promise<Buffer> {
    this.n('GET');
    return this.inner.get(key);
  }
  getRange(key: string, o: number, l: number, into?: Uint8Array): Promise<Buffer> {
    this.n('GET');
    return this.inner.getRange(key, o, l, into);
  }
  getTail(key: string, length: number): Promise<ObjectTail> {
    this.n('GET');
    return this.inner.getTail(key, length);
  }
  head(key: string): Promise<ObjectInfo | undefined> {
    this.n('HEAD');
    return this.inner.head(key);
  }
  put(key: string, body: Uint8Array): Promise<void> {
    this.n('PUT');
    return this.inner.put(key, body);
  }
  putIfAbsent(key: string, body: Uint8Array): Promise<boolean> {
    this.n('PUT');
    return this.inner.putIfAbsent(key, body);
  }
  list(prefix: string): Promise<ObjectInfo[]> {
    this.n('LIST');
    return this.inner.list(prefix);
  }
  delete(key: string): Promise<void> {
    this.n('DELETE');
    return this.inner.delete(key);
  }
  restamp(key: string, body: Uint8Array, version: string): Promise<string | undefined> {
    this.n('PUT');
    return this.inner.restamp(key, body, version);
  }
  cleanTemporaries(before: Date): Promise<number> {
    this.n('LIST');
    return this.inner.cleanTemporaries(before);
  }
  openWriter(key: string): ObjectWriter {
    const w = this.inner.openWriter(key);
    return {
      write: (c) => w.write(c),
      abort: () => w.abort(),
      finish: async () => {
        const info = await w.finish();
        this.n('PUT', info.size <= PART ? 1 : Math.ceil(info.size / PART) + 2);
        return info;
      },
    };
  }
}

export interface CompactionBench {
  readonly sizeMiB: number;
  readonly rps: number;
  readonly kept: number;
  readonly expired: number;
  readonly storedWithout: number;
  readonly storedWith: number;
  readonly mergedBytes: number;
  readonly compactSeconds: number;
  readonly gcSeconds: number;
  readonly rewrittenBytes: number;
  readonly requests: Record<string, number>;
  readonly requestsTotal: number;
  readonly catalogWrites: number;
  readonly oldest: {
    rp: number;
    chainBefore: number;
    chainAfter: number;
    beforeSeconds: number;
    afterSeconds: number;
  };
  readonly backupSeconds: number;
}

const POLICY: StoredPolicy = { last: 0, hourly: 24, daily: 7, weekly: 4, monthly: 0, locked: [] };
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

async function timedRestore(
  reader: SafeReader,
  rp: number,
  to: string,
): Promise<{ seconds: number; sha: string }> {
  rmSync(to, { force: true });
  const t = performance.now();
  await runRestore({
    pages: localPages(reader, rp, 'disk.img'),
    source: new StoreSource(reader, { bytes: 0 }),
    to,
    keysFor: () => undefined,
  });
  const seconds = (performance.now() - t) / 1000;
  return { seconds, sha: sha(readFileSync(to)) };
}

export async function compactionBench(o: {
  workDir: string;
  sizeMiB: number;
  days: number;
  seed: number;
  log: (m: string) => void;
}): Promise<CompactionBench> {
  const dir = join(o.workDir, 'compaction');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const img = join(dir, 'disk.img');
  makeImage(o.sizeMiB, img, o.seed);
  const store = new FsObjectStore(join(dir, 'safe'), 'bench');
  const start = Date.parse('2026-10-01T00:00:00Z');
  const hours = o.days * 24;
  const times = Array.from({ length: hours }, (_, i) =>
    new Date(start + i * 3_600_000 + 60_000).toISOString(),
  );
  const plan = planRetention(
    times.map((createdAt, i) => ({ rp: i + 1, createdAt })),
    POLICY,
  );
  const oldest = plan.keep[0]!.rp;
  let oldestSha = '';
  let clock = 0;
  const deps = {
    store,
    safe: 'bench',
    stateDir: join(dir, 'state'),
    agent: { id: 'bench', version: 'bench', host: 'bench' },
    runHook: async () => undefined,
    now: () => new Date(times[clock]!),
  };
  mkdirSync(deps.stateDir, { recursive: true });
  const tb = performance.now();
  let changed: [number, number][] | undefined;
  for (clock = 0; clock < hours; clock++) {
    if (clock > 0) changed = mutateImage(img, 1, o.seed * 100_000 + clock).changed;
    await runBackup(deps, { devices: [{ path: img, id: 'disk.img', changed }] });
    if (clock + 1 === oldest) oldestSha = sha(readFileSync(img));
    if ((clock + 1) % 120 === 0) o.log(`compaction bench: ${clock + 1}/${hours} hourly RPs`);
  }
  const backupSeconds = (performance.now() - tb) / 1000;
  const storedWithout = dirBytes(join(dir, 'safe'));
  const reader = new SafeReader(store, 'bench');
  const expired = plan.expire;
  let mergedBytes = 0;
  for (const rp of expired) mergedBytes += (await reader.manifest(rp)).stats.changedBytes;
  const chainBefore = (await reader.chain(oldest, 'disk.img')).length;
  const before = await timedRestore(reader, oldest, join(dir, 'restore-before.img'));
  if (before.sha !== oldestSha) throw new Error(`RP ${oldest} restored wrong before compaction`);

  const counting = new CountingStore(store);
  const now = new Date(Date.parse(times[hours - 1]!) + 60_000);
  const tc = performance.now();
  const r = await compactSafe(counting, 'bench', {
    policy: POLICY,
    owner: 'bench',
    now: () => now,
    log: o.log,
  });
  const compactSeconds = (performance.now() - tc) / 1000;
  const requests = { ...counting.counts };
  const tg = performance.now();
  const later = new Date(now.getTime() + 3 * 3_600_000);
  await compactSafe(store, 'bench', { policy: POLICY, owner: 'bench', now: () => later });
  const gcSeconds = (performance.now() - tg) / 1000;
  const storedWith = dirBytes(join(dir, 'safe'));
  const after = new SafeReader(store, 'bench');
  const chainAfter = (await after.chain(oldest, 'disk.img')).length;
  const restored = await timedRestore(after, oldest, join(dir, 'restore-after.img'));
  if (restored.sha !== oldestSha) throw new Error(`RP ${oldest} restored wrong after compaction`);
  const newest = await timedRestore(after, hours, join(dir, 'restore-newest.img'));
  if (newest.sha !== sha(readFileSync(img))) throw new Error(`RP ${hours} restored wrong after compaction`);
  // the offsite function's catalog writes for this job: lease put + delete, one transaction of
  // two items per expired RP, the safe's generation, one put per written segment
  const catalogWrites = 2 + 2 * r.expired.length + 1 + r.segmentsWritten;
  return {
    sizeMiB: o.sizeMiB,
    rps: hours,
    kept: r.kept.length,
    expired: r.expired.length,
    storedWithout,
    storedWith,
    mergedBytes,
    compactSeconds,
    gcSeconds,
    rewrittenBytes: r.bytesRewritten,
    requests,
    requestsTotal: counting.total(),
    catalogWrites,
    oldest: {
      rp: oldest,
      chainBefore,
      chainAfter,
      beforeSeconds: before.seconds,
      afterSeconds: restored.seconds,
    },
    backupSeconds,
  };
}

export function printCompactionReport(b: CompactionBench): void {
  const gib = b.mergedBytes / 2 ** 30;
  const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
  const lines = [
    '',
    `Compaction: ${b.rps} hourly RPs (${b.rps / 24} days, 1%/hour) of a ${b.sizeMiB} MiB image; policy 24 hourly / 7 daily / 4 weekly`,
    `  history written in ${b.backupSeconds.toFixed(1)} s; compaction keeps ${b.kept} RPs and merges ${b.expired}`,
    '',
    '| figure | without compaction | with compaction | ratio |',
    '|---|---|---|---|',
    `| stored bytes | ${mib(b.storedWithout)} | ${mib(b.storedWith)} | ${(b.storedWith / b.storedWithout).toFixed(3)} |`,
    `| restore of the oldest retained RP (${b.oldest.rp}) | ${b.oldest.beforeSeconds.toFixed(2)} s, chain of ${b.oldest.chainBefore} maps | ${b.oldest.afterSeconds.toFixed(2)} s, chain of ${b.oldest.chainAfter} | ${(b.oldest.beforeSeconds / b.oldest.afterSeconds).toFixed(2)}x faster |`,
    '',
    `  compaction: ${b.compactSeconds.toFixed(1)} s for ${gib.toFixed(2)} GiB merged = ${(gib / (b.compactSeconds / 60)).toFixed(1)} GiB/min in one process (one invocation); rewrote ${mib(b.rewrittenBytes)}; GC pass ${b.gcSeconds.toFixed(1)} s`,
    `  requests: ${b.requestsTotal} (${Object.entries(b.requests)
      .map(([k, v]) => `${k} ${v}`)
      .join(
        ', ',
      )}) = ${(b.requestsTotal / gib).toFixed(0)} per GiB merged; catalog writes ${b.catalogWrites} = ${(b.catalogWrites / gib).toFixed(0)} per GiB (≈ write units: items ≤ 1 KiB)`,
  ];
  console.log(lines.join('\n'));
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      'size-mib': { type: 'string', default: '256' },
      days: { type: 'string', default: '30' },
      seed: { type: 'string', default: '1' },
    },
  });
  const r = await compactionBench({
    workDir: join(import.meta.dirname, 'work'),
    sizeMiB: Number(values['size-mib']),
    days: Number(values.days),
    seed: Number(values.seed),
    log: (m) => console.error(`[bench] ${m}`),
  });
  printCompactionReport(r);
}
