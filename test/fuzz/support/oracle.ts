/**
 * What the fuzzer checks after every consumer: no crash (only errors with a product error code
 * and a readable reason), nothing of the safe deleted or changed (new objects may appear), bounded
 * memory; and the readers the verdicts are checked with.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { threadId } from 'node:worker_threads';
import { FsObjectStore } from '#adapters/fs-store.ts';
import { CdpError } from '#core/errors.ts';
import { deriveKeys, type SafeKeys } from '#core/format/crypto.ts';
import { decodeFrame, FrameError } from '#core/format/frame.ts';
import { decodeGeneration } from '#core/format/generation.ts';
import { decodeLockRecord } from '#core/format/lock-record.ts';
import { generationPrefix, parseKey, segmentKey } from '#core/keys.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import { processGone, thisProcess } from '#core/process-identity.ts';
import { SafeReader } from '#core/safe-reader.ts';
import { exitCodeFor } from '../../../agent/exit-codes.ts';
import { KEY, type PristineSafe, SAFE, walk } from './fixture.ts';

export type Snapshot = Map<string, string>;

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Every file of the safe directory and the SHA-256 of its bytes. */
export function snapshot(dir: string): Snapshot {
  return existsSync(dir) ? snapshotOf(contents(dir)) : new Map();
}

export function snapshotOf(files: ReadonlyMap<string, Buffer>): Snapshot {
  return new Map([...files].map(([rel, b]) => [rel, sha256(b)]));
}

/**
 * Files that existed before a consumer ran and are gone or different after it, unless `allowed`
 * gives the protocol's reason for that deletion.
 */
export function losses(
  before: Snapshot,
  dir: string,
  allowed: (rel: string) => string | undefined,
): { lost: string[]; excused: string[] } {
  const after = snapshot(dir);
  const lost: string[] = [];
  const excused: string[] = [];
  for (const [rel, hash] of before) {
    const now = after.get(rel);
    if (now === hash) continue;
    const why = now === undefined ? allowed(rel) : undefined;
    if (why) excused.push(`${rel}: ${why}`);
    else lost.push(`${rel} ${now === undefined ? 'deleted' : 'changed'}`);
  }
  return { lost, excused };
}

/**
 * A lock any holder may delete (docs/FORMAT.md §7a): it decodes and its process is gone (this
 * boot, no longer running, or this thread's lock that it no longer holds). `held`: the lock ids
 * this process holds (the fixture's).
 */
export function staleLock(bytes: Buffer, held: ReadonlySet<string>): string | undefined {
  let r: ReturnType<typeof decodeLockRecord>;
  try {
    r = decodeLockRecord(bytes, 'lock');
  } catch {
    return undefined;
  }
  const me = thisProcess();
  if (r.bootId === me.bootId && r.pid === me.pid && r.pidStart === me.pidStart)
    return (r.thread ?? 0) === threadId && !held.has(r.id) ? 'a stale lock of this process' : undefined;
  return processGone(r) ? `a stale lock (pid ${r.pid} is gone)` : undefined;
}

/** What a compaction may list as garbage (core/compaction/orphans.ts): never safe.json, policy, locks, damage. */
const GARBAGE_KINDS = new Set([
  'manifest',
  'block-map',
  'segment',
  'generation',
  'generation-map',
  'journal',
  'compaction-work',
  'legacy-lease',
]);

/**
 * Garbage a compaction may delete: listed in the newest generation of the safe as it was before
 * the compaction ran, its `since` + `graceMs` passed, and of a kind that can become garbage.
 */
export function dueGarbage(before: Map<string, Buffer>, graceMs: number, now: number): Set<string> {
  const gens = [...before.keys()].filter((rel) => /^gen\/\d{10}\.json$/.test(rel)).sort();
  const newest = gens[gens.length - 1];
  const out = new Set<string>();
  if (!newest) return out;
  let gen: ReturnType<typeof decodeGeneration>;
  try {
    gen = decodeGeneration(before.get(newest)!, newest);
  } catch {
    return out;
  }
  for (const g of gen.garbage) {
    if (!(Date.parse(g.since) + graceMs <= now)) continue;
    try {
      const k = parseKey(g.key);
      if (k.safe === SAFE && GARBAGE_KINDS.has(k.kind)) out.add(g.key.slice(`safes/${SAFE}/`.length));
    } catch {
      /* not a key */
    }
  }
  return out;
}

/** The bytes of every file, for judging deletions afterwards (the safes are small). */
export function contents(dir: string): Map<string, Buffer> {
  return new Map(walk(dir).map((rel) => [rel, readFileSync(join(dir, rel))]));
}

/** Messages that come from the runtime, not from a check that names what is wrong. */
const RUNTIME =
  /Cannot read propert|Cannot set propert|is not a function|is not iterable|is not defined|Invalid array length|Maximum call stack|\bNaN\b|\[object Object\]|Invalid typed array length|out of memory/i;

export function unclear(message: string): boolean {
  return message.trim().length < 12 || RUNTIME.test(message);
}

export type Verdict =
  | { readonly ok: true; readonly label: string }
  | { readonly ok: false; readonly label: string; readonly problem: string };

/** A thrown error as the CLI would report it: a CdpError with an exit code and a reason, or a crash. */
export function judgeThrown(e: unknown): Verdict {
  if (!(e instanceof CdpError)) {
    const err = e as Error;
    return {
      ok: false,
      label: 'crash',
      problem: `threw ${err?.name ?? typeof e} (not a CdpError): ${err?.stack ?? String(e)}`,
    };
  }
  const exit = exitCodeFor(e.code);
  if (exit === 1)
    return { ok: false, label: `${e.code} (exit 1)`, problem: `exit 1 (unexpected failure): ${e.message}` };
  if (unclear(e.message))
    return { ok: false, label: `${e.code} (exit ${exit})`, problem: `no clear reason: ${e.message}` };
  return { ok: true, label: `${e.code} (exit ${exit})` };
}

/** Samples the resident set size; `peak` is the highest seen since `start`. */
export class RssMonitor {
  readonly start = process.memoryUsage().rss;
  peak = this.start;
  private readonly timer: NodeJS.Timeout;
  constructor(everyMs = 25) {
    this.timer = setInterval(() => this.sample(), everyMs);
    this.timer.unref();
  }
  sample(): number {
    const rss = process.memoryUsage().rss;
    if (rss > this.peak) this.peak = rss;
    return rss;
  }
  stop(): void {
    clearInterval(this.timer);
    this.sample();
  }
}

const derived = new Map<string, SafeKeys | undefined>();

/** The keys of a pristine safe (derived from its own salt, whatever a mutation did to safe.json). */
export function keysOf(p: PristineSafe): SafeKeys | undefined {
  if (!derived.has(p.dir)) {
    const cfg = JSON.parse(readFileSync(join(p.dir, 'safe.json'), 'utf8'));
    derived.set(
      p.dir,
      cfg.encryption ? deriveKeys(KEY, Buffer.from(cfg.encryption.salt, 'base64')) : undefined,
    );
  }
  return derived.get(p.dir);
}

/** A store that shows no generations: the safe as its manifests alone describe it (what ingest checks). */
export function withoutGenerations(store: ObjectStore): ObjectStore {
  const gen = generationPrefix(SAFE);
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'list')
        return async (prefix: string) =>
          (await target.list(prefix)).filter((o: { key: string }) => !o.key.startsWith(gen));
      const v = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}

export function readerOf(dir: string, keys: SafeKeys | undefined, generations = true): SafeReader {
  const store = new FsObjectStore(dir, SAFE);
  return new SafeReader(generations ? store : withoutGenerations(store), SAFE, keys);
}

/**
 * Whether device `device` at `rp` reads back as `expected`: 'exact', or why not ('corrupt:<segment>:
 * …' for a block whose frame fails its checks, disagrees with the segment's index or is not in the
 * segment, else the error or 'different bytes'). Each frame is read where the index puts it.
 */
export async function readsBack(
  reader: SafeReader,
  rp: number,
  device: string,
  expected: Buffer | undefined,
  keys?: SafeKeys,
): Promise<string> {
  let segment = '';
  try {
    const r = await reader.resolve(rp, device);
    if (!expected) return `device ${device} is not in RP ${rp} of the pristine safe`;
    // sizes first: a forged map may claim any size, and this check must not allocate it
    if (r.deviceSize !== expected.length)
      return `different bytes (a ${r.deviceSize}-byte device, ${expected.length} expected)`;
    const img = Buffer.alloc(r.deviceSize);
    const segments = new Map<string, Buffer>();
    for (const e of r.extents) {
      if (e.kind !== 'data') continue;
      segment = e.segment;
      const entries = await reader.segmentEntries(e.segment);
      let bytes = segments.get(e.segment);
      if (!bytes) {
        bytes = await reader.store.get(segmentKey(SAFE, e.segment));
        segments.set(e.segment, bytes);
      }
      for (let i = 0; i < e.count; i++) {
        const entry = entries[e.frame + i];
        if (!entry) return `corrupt:${e.segment}: frame ${e.frame + i} is not in the segment`;
        let plain: Buffer;
        try {
          const f = decodeFrame(bytes, entry.offset, { dataKey: keys?.dataKey, idKey: keys?.idKey });
          if (!f.header.identity.equals(entry.identity))
            throw new FrameError('frame does not match the segment index');
          plain = f.plain;
        } catch (err) {
          if (err instanceof FrameError) return `corrupt:${e.segment}: ${err.message}`;
          throw err;
        }
        const at = (e.first + i) * r.blockSize;
        if (at + plain.length > img.length) return 'different bytes (blocks past the device end)';
        plain.copy(img, at);
      }
    }
    return img.equals(expected) ? 'exact' : 'different bytes';
  } catch (e) {
    if (e instanceof CdpError && e.code === 'E_CORRUPT_BLOCK')
      return `corrupt:${String(e.context.segment ?? segment)}: ${e.message}`;
    return `${e instanceof CdpError ? e.code : 'crash'}: ${(e as Error).message}`;
  }
}
