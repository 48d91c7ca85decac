/**
 * `cdp-agent restore`: one device of one RP into a file or block device, straight from the safe
 * (a directory, or S3 with the agent's credentials) or, with --remote, through the restore
 * function's plan and presigned URLs. Prints the RTO figures.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { CdpError } from '#core/errors.ts';
import { deriveKeys, keyCheckMatches, parseKeyFile, type SafeKeys } from '#core/format/crypto.ts';
import type { RestorePlan } from '#core/restore-plan.ts';
import { parseRpSelector, selectRp } from '#core/rp-selector.ts';
import { SafeReader } from '#core/safe-reader.ts';
import { EXIT } from '../exit-codes.ts';
import { progressBar } from '../progress.ts';
import { withReadLock } from '../read-lock.ts';
import { localPages, remotePages } from '../restore/plans.ts';
import { type RestoreResult, runRestore } from '../restore/run-restore.ts';
import { countingStore, type SegmentSource, StoreSource, UrlSource } from '../restore/segment-source.ts';
import { openSafeLocation, type SafeLocation } from '../safe-location.ts';

export interface RestoreOptions {
  readonly safe: string;
  readonly device: string;
  readonly rp: string;
  readonly to: string;
  readonly remote?: string;
  readonly encryptKeyFile?: string;
  readonly allowDamaged?: boolean;
  readonly full?: boolean;
  readonly overwrite?: boolean;
  readonly parallel?: string;
  readonly json?: boolean;
}

async function restoreNow(o: RestoreOptions, loc: SafeLocation): Promise<RestoreResult> {
  const selector = parseRpSelector(o.rp);
  const to = resolve(o.to);
  let pages: AsyncIterable<RestorePlan>;
  let source: SegmentSource;
  let takenFrom: string | undefined;
  if (o.remote) {
    const urls = new Map<string, string>();
    pages = remotePages(o.remote, { safe: loc.safe, device: o.device, rp: selector }, urls);
    source = new UrlSource((seg) => {
      const u = urls.get(seg);
      if (!u) throw new Error(`the plan gave no URL for segment ${seg}`);
      return u;
    }, loc.safe);
  } else {
    const counter = { bytes: 0 };
    const reader = new SafeReader(countingStore(loc.store, counter), loc.safe);
    const rp = await selectRp(reader, selector);
    const m = await reader.manifest(rp);
    const d = m.devices.find((x) => x.id === o.device);
    if (d && m.agent.host === hostname()) takenFrom = d.source;
    // from S3, small pages: the first ranges start while later pages' segment footers are still
    // being read (a directory's footers are quick to read, and every page ends in a barrier)
    pages = localPages(reader, rp, o.device, loc.store.filePath ? {} : { maxRanges: 64 });
    source = new StoreSource(reader, counter);
  }
  const bar = progressBar(!o.json);
  try {
    return await runRestore({
      pages,
      source,
      to,
      keysFor: keysFrom(o.encryptKeyFile),
      allowDamaged: o.allowDamaged,
      delta: o.full ? 'never' : 'auto',
      overwrite: o.overwrite === true || o.full === true,
      takenFrom,
      // a directory is read from the page cache or a local disk: more reads in flight only
      // compete with the decode workers for the cores (measured: 4 beats 8 and 16)
      parallel: o.parallel ? parallelOption(o.parallel) : o.remote || o.safe.startsWith('s3://') ? 8 : 4,
      onProgress: (done, total) => bar.update(`restore ${o.device}`, done, total),
    });
  } finally {
    bar.stop();
  }
}

export function keysFrom(file: string | undefined): (plan: RestorePlan) => SafeKeys | undefined {
  return (plan) => {
    if (!plan.encryption) return undefined;
    if (!file) {
      throw new CdpError('E_SAFE_ACCESS', `safe ${plan.safe} is encrypted: give --encrypt-key-file`);
    }
    let master: Buffer;
    try {
      master = parseKeyFile(readFileSync(file));
    } catch (e) {
      throw new CdpError('E_USAGE', `--encrypt-key-file ${file}: ${(e as Error).message}`);
    }
    const keys = deriveKeys(master, Buffer.from(plan.encryption.salt, 'base64'));
    if (!keyCheckMatches(keys, plan.encryption.keyCheck)) {
      throw new CdpError('E_SAFE_ACCESS', `--encrypt-key-file ${file} is not the key of safe ${plan.safe}`);
    }
    return keys;
  };
}

export async function restoreCommand(o: RestoreOptions): Promise<number> {
  const loc = await openSafeLocation(o.safe);
  // read straight from the safe: the read lock comes first, so the view this restore takes (its
  // generation) is one garbage collection keeps for as long as the lock lives
  const r = o.remote
    ? await restoreNow(o, loc)
    : await withReadLock(loc.store, loc.safe, 'restore', () => restoreNow(o, loc));
  const secs = r.durationMs / 1000;
  const mbps = r.deviceSize / 1e6 / Math.max(secs, 0.001);
  if (o.json) {
    console.log(JSON.stringify({ ...r, seconds: secs, mbPerSecond: Number(mbps.toFixed(1)) }, null, 1));
  } else {
    const mib = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MiB`;
    console.log(
      `restored ${r.device} at RP ${r.rp} of ${r.safe} to ${r.to}${r.delta ? ' (delta)' : ''}: ${mib(r.deviceSize)} in ${secs.toFixed(1)} s (${mbps.toFixed(0)} MB/s); ` +
        `fetched ${mib(r.fetchedBytes)}, wrote ${mib(r.writtenBytes)}${r.delta ? `, ${r.unchangedBlocks} of ${r.dataBlocks} stored blocks already right` : ''}`,
    );
    for (const d of r.damaged) {
      console.error(
        `damaged: blocks ${d.first}..${d.first + d.count - 1} (segment ${d.segment}): ${d.reason}`,
      );
    }
  }
  return r.damaged.length > 0 ? EXIT.damaged : EXIT.ok;
}

function parallelOption(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 256)
    throw new CdpError('E_USAGE', `--parallel ${v}: give a whole number from 1 to 256`);
  return n;
}
