/**
 * The safe's lock protocol (docs/FORMAT.md §7a), the one implementation every writer uses: backup
 * and replicate (write locks), `cdp-agent compact` and the compaction function (compact locks),
 * restore and verify (read locks, where the reader may write).
 *
 * A lock is an object `locks/<id>.json` with a random id, created with a conditional create, then
 * checked against every other lock (write, then list: of two processes that lock at once, at least
 * the later one sees the other). Its age is judged by the store's clock (the object's modification
 * time against the modification time of the checker's own lock, freshly re-stamped), never by a
 * host's clock, so clock skew between hosts does not matter. A holder re-stamps its lock every
 * `refreshMs`; a lock not re-stamped for `staleMs` is stale, and so is one whose process (same boot,
 * same pid and start time) no longer runs. Stale locks are deleted by whoever sees them. A holder
 * that could not re-stamp its lock for `refreshableMs` (suspended, cut off) must assume it lost the
 * lock and stop before its next commit: `check()` throws then.
 */
import { randomBytes } from 'node:crypto';
import { threadId } from 'node:worker_threads';
import { CdpError, NotFoundError } from './errors.ts';
import { decodeLockRecord, type LockKind, type LockRecord } from './format/lock-record.ts';
import { encodeJson } from './format/manifest.ts';
import { generationPrefix, lockKey, locksPrefix, parseKey } from './keys.ts';
import type { ObjectStore } from './ports/object-store.ts';
import { processGone, thisProcess } from './process-identity.ts';

export interface LockTiming {
  /** A lock not re-stamped for this long is stale. @default 30 min */
  readonly staleMs: number;
  /** How often a holder re-stamps its lock. @default 5 min */
  readonly refreshMs: number;
  /** A holder that could not re-stamp for this long stops. @default staleMs − 1.5 × refreshMs */
  readonly refreshableMs: number;
}

export const LOCK_TIMING: LockTiming = {
  staleMs: 30 * 60_000,
  refreshMs: 5 * 60_000,
  refreshableMs: 30 * 60_000 - 7.5 * 60_000,
};

/** A holder's `check()` re-stamps its lock when the last re-stamp is older than this. */
const CONFIRM_MS = 5_000;

/** Timings scaled from `staleMs` (tests), keeping the default proportions. */
export function lockTiming(staleMs: number): LockTiming {
  return { staleMs, refreshMs: staleMs / 6, refreshableMs: staleMs * 0.75 };
}

/** Which kinds a new lock of a kind cannot coexist with. */
const EXCLUDES: Record<LockKind, readonly LockKind[]> = {
  write: ['write'],
  compact: ['compact'],
  read: [],
};

export class LockBusyError extends CdpError {
  constructor(safe: string, mine: LockKind, other: LockRecord | undefined, key: string) {
    const who = other
      ? `${other.purpose} by ${other.owner} on ${other.host} (pid ${other.pid}, since ${other.createdAt})`
      : `an unreadable lock ${key}`;
    super(
      'E_LOCK_BUSY',
      `safe ${safe} is locked: ${who}; ${mine === 'write' ? 'one backup or replication' : 'one compaction'} at a time`,
      { safe, key },
      other
        ? 'run again when it has finished; a lock whose holder died is stale after 30 minutes (at once on the same host)'
        : `if no cdp-agent or compaction runs, delete ${key}`,
    );
  }
}

export class LockLostError extends CdpError {
  constructor(safe: string, why: string) {
    super(
      'E_LOCK_LOST',
      `lost the lock on safe ${safe}: ${why}; nothing more was committed`,
      { safe },
      'run again (a host that is suspended or cut off for 20 minutes or more loses its locks)',
    );
  }
}

/** Another process's lock, as a checker sees it. */
export interface SeenLock {
  readonly key: string;
  readonly id: string;
  /** Undefined when the object could not be read or decoded (treated as live, with view 0). */
  readonly record: LockRecord | undefined;
  readonly stale: boolean;
}

export interface HeldLock {
  readonly id: string;
  readonly key: string;
  readonly record: LockRecord;
  /** Throws LockLostError when the lock may have been lost; call right before a commit or a delete. */
  check(): Promise<void>;
  /** Re-stamps the lock now (also done on a timer while held). */
  refresh(): Promise<void>;
  /** Every other lock, re-stamping this one first so its time is the store's now; deletes stale ones. */
  others(): Promise<SeenLock[]>;
  /** Stops refreshing and deletes the lock. */
  release(): Promise<void>;
  /** Stops refreshing but keeps the lock (a compaction job whose next task takes it up: resumeLock). */
  detach(): Promise<void>;
}

export interface LockRequest {
  readonly kind: LockKind;
  readonly purpose: string;
  readonly owner: string;
  readonly timing?: LockTiming;
  readonly log?: (msg: string) => void;
}

/** The newest committed generation number of the safe (0 when it has none). */
export async function newestGeneration(store: ObjectStore, safe: string): Promise<number> {
  let newest = 0;
  for (const o of await store.list(generationPrefix(safe))) {
    try {
      const k = parseKey(o.key);
      if (k.kind === 'generation' && k.generation > newest) newest = k.generation;
    } catch {
      /* not ours */
    }
  }
  return newest;
}

/** The ids of the locks this process holds now: a lock of this process that is not among them was abandoned. */
const heldHere = new Set<string>();

/** Whether the holder of `record` is known to be gone (this boot, and its process no longer runs or no longer holds it). */
function holderGone(record: LockRecord): boolean {
  const me = thisProcess();
  if (
    record.bootId === me.bootId &&
    record.pidNs === me.pidNs &&
    record.pid === me.pid &&
    record.pidStart === me.pidStart
  )
    // this process: gone when this thread wrote it and no longer holds it (another thread: can't tell)
    return (record.thread ?? 0) === threadId && !heldHere.has(record.id);
  return processGone(record);
}

async function readLock(store: ObjectStore, key: string): Promise<LockRecord | undefined> {
  try {
    return decodeLockRecord(await store.get(key), key);
  } catch (e) {
    if (e instanceof NotFoundError) return undefined;
    return undefined;
  }
}

/**
 * Every lock of the safe except `own`, judged against `now` (the store's time: the modification
 * time of a lock the caller has just written or re-stamped). Stale locks are deleted.
 */
async function seeLocks(
  store: ObjectStore,
  safe: string,
  own: string | undefined,
  timing: LockTiming,
  log: (msg: string) => void,
): Promise<{ now: Date | undefined; others: SeenLock[] }> {
  const listed = await store.list(locksPrefix(safe));
  const mine = listed.find((o) => o.key === own);
  const now = mine?.modified;
  const others: SeenLock[] = [];
  for (const o of listed) {
    if (o.key === own) continue;
    let id: string;
    try {
      const k = parseKey(o.key);
      if (k.kind !== 'lock') continue;
      id = k.id;
    } catch {
      continue;
    }
    const record = await readLock(store, o.key);
    const old =
      now !== undefined && o.modified !== undefined && now.getTime() - o.modified.getTime() > timing.staleMs;
    const gone = record !== undefined && holderGone(record);
    const stale = old || gone;
    if (stale) {
      await store.delete(o.key).catch(() => undefined);
      log(
        `removed a stale lock ${o.key} (${record ? `${record.purpose} by ${record.owner} on ${record.host}, pid ${record.pid}` : 'unreadable'}: ${gone ? 'its process no longer runs' : 'not refreshed for too long'})`,
      );
    }
    others.push({ key: o.key, id, record, stale });
  }
  return { now, others };
}

class Held implements HeldLock {
  readonly id: string;
  readonly key: string;
  readonly record: LockRecord;
  private readonly store: ObjectStore;
  private readonly safe: string;
  private readonly timing: LockTiming;
  private readonly log: (msg: string) => void;
  private readonly body: Buffer;
  private version: string;
  /** performance.now() and Date.now() when the last successful re-stamp was sent. */
  private refreshedMono: number;
  private refreshedWall: number;
  private lost: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;

  constructor(
    store: ObjectStore,
    safe: string,
    record: LockRecord,
    body: Buffer,
    version: string,
    sentMono: number,
    sentWall: number,
    timing: LockTiming,
    log: (msg: string) => void,
  ) {
    this.store = store;
    this.safe = safe;
    this.record = record;
    this.id = record.id;
    this.key = lockKey(safe, record.id);
    this.body = body;
    this.version = version;
    this.refreshedMono = sentMono;
    this.refreshedWall = sentWall;
    this.timing = timing;
    this.log = log;
    heldHere.add(record.id);
    this.timer = setInterval(() => {
      this.refresh().catch((e) =>
        this.log(`could not refresh the lock on safe ${this.safe}: ${(e as Error).message}`),
      );
    }, timing.refreshMs);
    this.timer.unref();
  }

  private elapsed(): number {
    return Math.max(performance.now() - this.refreshedMono, Date.now() - this.refreshedWall);
  }

  /**
   * Confirms the lock is still this holder's: re-stamped within the last few seconds (else it is
   * re-stamped now, which fails if another process deleted it as stale), and never left unrefreshed
   * for `refreshableMs`.
   */
  async check(): Promise<void> {
    if (this.lost) throw new LockLostError(this.safe, this.lost);
    if (Date.now() - this.refreshedWall > CONFIRM_MS || performance.now() - this.refreshedMono > CONFIRM_MS)
      await this.refresh();
    if (this.lost) throw new LockLostError(this.safe, this.lost);
    if (this.elapsed() > this.timing.refreshableMs)
      throw new LockLostError(this.safe, `not refreshed for ${Math.round(this.elapsed() / 1000)} s`);
  }

  refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        if (this.lost) return;
        const mono = performance.now();
        const wall = Date.now();
        if (Math.max(mono - this.refreshedMono, wall - this.refreshedWall) > this.timing.refreshableMs) {
          // too late: others may already take it for stale; re-stamping now could revive it under them
          this.lost = `not refreshed for ${Math.round((wall - this.refreshedWall) / 1000)} s`;
          return;
        }
        const v = await this.store.restamp(this.key, this.body, this.version);
        if (v === undefined) {
          this.lost = 'another process removed it as stale';
          return;
        }
        this.version = v;
        this.refreshedMono = mono;
        this.refreshedWall = wall;
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  async others(): Promise<SeenLock[]> {
    await this.refresh();
    await this.check();
    return (await seeLocks(this.store, this.safe, this.key, this.timing, this.log)).others;
  }

  async release(): Promise<void> {
    await this.detach();
    await this.store.delete(this.key).catch(() => undefined);
    heldHere.delete(this.id);
  }

  async detach(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.refreshing?.catch(() => undefined);
  }
}

/**
 * Takes a lock of `kind` on the safe: creates it, then checks every other lock. Throws
 * LockBusyError (deleting its own lock again) when a live lock of a kind it excludes exists.
 */
export async function acquireLock(store: ObjectStore, safe: string, req: LockRequest): Promise<HeldLock> {
  const timing = req.timing ?? LOCK_TIMING;
  const log = req.log ?? (() => undefined);
  const view = await newestGeneration(store, safe);
  const me = thisProcess();
  let record: LockRecord | undefined;
  let body: Buffer | undefined;
  const mono = performance.now();
  const wall = Date.now();
  for (let attempt = 0; !record; attempt++) {
    const candidate: LockRecord = {
      format: 'cdp-lock',
      version: 2,
      id: randomBytes(16).toString('hex'),
      kind: req.kind,
      purpose: req.purpose,
      owner: req.owner,
      host: me.host,
      bootId: me.bootId,
      pidNs: me.pidNs,
      pid: me.pid,
      pidStart: me.pidStart,
      thread: threadId,
      createdAt: new Date().toISOString(),
      view,
    };
    const b = encodeJson(candidate);
    heldHere.add(candidate.id); // before it exists: a checker in this process never takes it for abandoned
    let created = false;
    try {
      created = await store.putIfAbsent(lockKey(safe, candidate.id), b);
    } catch (e) {
      heldHere.delete(candidate.id);
      throw e;
    }
    if (created) {
      record = candidate;
      body = b;
    } else {
      heldHere.delete(candidate.id);
      if (attempt > 3) throw new CdpError('E_INTERNAL', `could not create a lock object in safe ${safe}`);
    }
  }
  const key = lockKey(safe, record.id);
  try {
    const head = await store.head(key);
    if (!head?.version) throw new LockLostError(safe, 'its lock object vanished as it was created');
    const { others } = await seeLocks(store, safe, key, timing, log);
    const excludes = EXCLUDES[req.kind];
    const conflict = others.find(
      (o) => !o.stale && excludes.length > 0 && (o.record === undefined || excludes.includes(o.record.kind)),
    );
    if (conflict) throw new LockBusyError(safe, req.kind, conflict.record, conflict.key);
    return new Held(store, safe, record, body!, head.version, mono, wall, timing, log);
  } catch (e) {
    await store.delete(key).catch(() => undefined);
    heldHere.delete(record.id);
    throw e;
  }
}

/**
 * Takes up a lock this holder created earlier (a compaction job's next task, in another function
 * invocation): re-stamps it if it still exists and was not left stale in between.
 */
export async function resumeLock(
  store: ObjectStore,
  safe: string,
  id: string,
  timing: LockTiming = LOCK_TIMING,
  log: (msg: string) => void = () => undefined,
): Promise<HeldLock> {
  const key = lockKey(safe, id);
  const before = await store.head(key);
  const bytes = before && (await store.get(key).catch(() => undefined));
  const record =
    bytes &&
    (await Promise.resolve()
      .then(() => decodeLockRecord(bytes, key))
      .catch(() => undefined));
  if (!before?.version || !before.modified || !bytes || !record)
    throw new LockLostError(safe, `lock ${id} is gone (taken for stale by another process)`);
  const mono = performance.now();
  const wall = Date.now();
  const v = await store.restamp(key, bytes, before.version);
  const after = v !== undefined ? await store.head(key) : undefined;
  if (!v || !after?.modified) throw new LockLostError(safe, `lock ${id} was removed meanwhile`);
  if (after.modified.getTime() - before.modified.getTime() > timing.refreshableMs) {
    await store.delete(key).catch(() => undefined);
    throw new LockLostError(
      safe,
      `lock ${id} was not refreshed for too long; another process may have taken over`,
    );
  }
  return new Held(store, safe, record, bytes, v, mono, wall, timing, log);
}

/** The views (generation numbers) of every live write and read lock: GC keeps what they may use. */
export function liveViews(others: readonly SeenLock[]): number[] {
  return others
    .filter((o) => !o.stale && (o.record === undefined || o.record.kind !== 'compact'))
    .map((o) => o.record?.view ?? 0);
}
