/**
 * The lock protocol (core/locks.ts, docs/FORMAT.md §7a) on a directory store: which kinds exclude
 * which, staleness by the store's clock and by a gone process, refresh, loss, and races.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsObjectStore } from '#adapters/fs-store.ts';
import type { LockRecord } from '#core/format/lock-record.ts';
import { encodeJson } from '#core/format/manifest.ts';
import { lockKey, locksPrefix } from '#core/keys.ts';
import { acquireLock, LockBusyError, LockLostError, lockTiming, resumeLock } from '#core/locks.ts';
import { thisProcess } from '#core/process-identity.ts';

const SAFE = 'locked';
let root: string;
let store: FsObjectStore;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'locks-'));
  store = new FsObjectStore(join(root, SAFE), SAFE);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const take = (kind: 'write' | 'compact' | 'read', timing = lockTiming(30 * 60_000)) =>
  acquireLock(store, SAFE, { kind, purpose: kind, owner: 'test', timing });

/** A lock object written as another process would have written it. */
function foreignLock(id: string, patch: Partial<LockRecord>): string {
  const record: LockRecord = {
    format: 'cdp-lock',
    version: 2,
    id,
    kind: 'write',
    purpose: 'backup',
    owner: 'other-agent',
    host: 'elsewhere',
    bootId: 'another-boot',
    pid: 1,
    pidStart: '1',
    createdAt: new Date().toISOString(),
    view: 0,
    ...patch,
  };
  mkdirSync(join(root, SAFE, 'locks'), { recursive: true });
  const path = join(root, SAFE, 'locks', `${id}.json`);
  writeFileSync(path, encodeJson(record));
  return path;
}

async function lockCount(): Promise<number> {
  return (await store.list(locksPrefix(SAFE))).length;
}

describe('locks', () => {
  it('one write lock and one compact lock at a time; read locks never wait; release frees', async () => {
    const w = await take('write');
    await expect(take('write')).rejects.toBeInstanceOf(LockBusyError);
    const c = await take('compact');
    await expect(take('compact')).rejects.toBeInstanceOf(LockBusyError);
    const r1 = await take('read');
    const r2 = await take('read');
    expect(await lockCount()).toBe(4); // the refused ones removed their own objects again
    await w.release();
    const w2 = await take('write');
    for (const l of [c, r1, r2, w2]) await l.release();
    expect(await lockCount()).toBe(0);
  });

  it('names the holder when busy', async () => {
    const w = await take('write');
    await expect(take('write')).rejects.toThrow(/locked: write by test on .* \(pid \d+, since/);
    await w.release();
  });

  it('a lock of a process of this boot that no longer runs is stale at once, and removed', async () => {
    const dead = spawnSync('true').pid!;
    const me = thisProcess();
    foreignLock('a'.repeat(32), { bootId: me.bootId, pidNs: me.pidNs, pid: dead, pidStart: '1' });
    const w = await take('write');
    expect((await store.list(locksPrefix(SAFE))).map((o) => o.key)).toEqual([w.key]);
    await w.release();
  });

  it('a lock of this boot but another pid namespace (another container) is never taken for gone', async () => {
    const me = thisProcess();
    const dead = spawnSync('true').pid!;
    foreignLock('d'.repeat(32), { bootId: me.bootId, pidNs: 'pid:[1]', pid: dead, pidStart: '1' });
    await expect(take('write')).rejects.toBeInstanceOf(LockBusyError);
  });

  it('a lock of a live process elsewhere is busy until the store says it is older than staleMs', async () => {
    const path = foreignLock('b'.repeat(32), {});
    await expect(take('write')).rejects.toBeInstanceOf(LockBusyError);
    const old = new Date(Date.now() - 31 * 60_000);
    utimesSync(path, old, old);
    const w = await take('write');
    expect(await lockCount()).toBe(1);
    await w.release();
  });

  it('an unreadable lock is taken for live (and named) until it grows stale', async () => {
    await store.putIfAbsent(lockKey(SAFE, 'c'.repeat(32)), Buffer.from('{not json'));
    await expect(take('compact')).rejects.toThrow(/unreadable lock/);
    await expect(take('read')).resolves.toBeDefined();
  });

  it('a holder keeps its lock fresh while it works, so nobody takes it for stale', async () => {
    const timing = lockTiming(3000); // stale after 3 s, refreshed every 0.5 s
    const w = await take('write', timing);
    await new Promise((r) => setTimeout(r, 4000));
    await expect(take('write', timing)).rejects.toBeInstanceOf(LockBusyError);
    await w.check();
    await w.release();
  }, 20_000);

  it('a holder whose lock was removed finds out before its next commit', async () => {
    const timing = lockTiming(3000);
    const w = await take('write', timing);
    await store.delete(w.key); // another process took it for stale
    await new Promise((r) => setTimeout(r, 5100)); // past check()'s confirmation window, before any refresh is due
    await expect(w.check()).rejects.toBeInstanceOf(LockLostError);
    expect(await lockCount()).toBe(0); // and it did not bring its lock back
    await w.release();
  });

  it('of writers that lock at the same moment, at most one wins (20 races)', async () => {
    for (let i = 0; i < 20; i++) {
      const all = await Promise.allSettled([take('write'), take('write'), take('write')]);
      const won = all.filter((r) => r.status === 'fulfilled');
      expect(won.length).toBeLessThanOrEqual(1);
      for (const r of all) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(LockBusyError);
      for (const r of won)
        await (r as PromiseFulfilledResult<Awaited<ReturnType<typeof take>>>).value.release();
      expect(await lockCount()).toBe(0);
    }
  });

  it('a job takes its lock up again in another invocation, unless it went stale meanwhile', async () => {
    const c = await take('compact');
    await c.detach();
    const again = await resumeLock(store, SAFE, c.id);
    await again.check();
    await again.detach();
    const path = join(root, SAFE, 'locks', `${c.id}.json`);
    const old = new Date(Date.now() - 40 * 60_000);
    utimesSync(path, old, old);
    await expect(resumeLock(store, SAFE, c.id)).rejects.toBeInstanceOf(LockLostError);
    expect(await lockCount()).toBe(0);
  });
});
