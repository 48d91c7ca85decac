/**
 * The compaction lease: one compactor per safe at a time. A lease is a conditional write with an
 * expiry; a holder that died is taken over once its lease has expired, and the same owner
 * (a rerun after a crash) takes its own lease back at once.
 */
import { CdpError, NotFoundError } from '../errors.ts';
import { encodeJson } from '../format/manifest.ts';
import { lockKey } from '../keys.ts';
import type { Catalog } from '../ports/catalog.ts';
import type { ObjectStore } from '../ports/object-store.ts';

export interface Lease {
  acquire(): Promise<void>;
  release(): Promise<void>;
}

export class LeaseBusyError extends CdpError {
  constructor(safe: string, owner: string, expiresAt: string) {
    super(
      'E_LEASE_BUSY',
      `safe ${safe} is being compacted by ${owner} (lease until ${expiresAt})`,
      { safe, owner, expiresAt },
      'wait for it to finish, or for the lease to expire',
    );
  }
}

/** A lease held in `lock.json` of the safe, created with putIfAbsent. */
export class ObjectStoreLease implements Lease {
  private readonly store: ObjectStore;
  private readonly safe: string;
  private readonly owner: string;
  private readonly ttlMs: number;
  private readonly now: () => Date;

  constructor(
    store: ObjectStore,
    safe: string,
    owner: string,
    ttlMs: number,
    now: () => Date = () => new Date(),
  ) {
    this.store = store;
    this.safe = safe;
    this.owner = owner;
    this.ttlMs = ttlMs;
    this.now = now;
  }

  private body(): Buffer {
    return encodeJson({
      owner: this.owner,
      expiresAt: new Date(this.now().getTime() + this.ttlMs).toISOString(),
    });
  }

  async acquire(): Promise<void> {
    const key = lockKey(this.safe);
    for (let attempt = 0; attempt < 2; attempt++) {
      if (await this.store.putIfAbsent(key, this.body())) return;
      let held: { owner?: string; expiresAt?: string };
      try {
        held = JSON.parse((await this.store.get(key)).toString('utf8'));
      } catch (e) {
        if (e instanceof NotFoundError) continue; // released meanwhile
        held = {}; // unreadable: treat as expired
      }
      const expired = !(Date.parse(held.expiresAt ?? '') > this.now().getTime());
      if (held.owner !== this.owner && !expired)
        throw new LeaseBusyError(this.safe, held.owner ?? '?', held.expiresAt ?? '?');
      await this.store.delete(key);
    }
    throw new LeaseBusyError(this.safe, 'another compactor', 'now');
  }

  async release(): Promise<void> {
    const key = lockKey(this.safe);
    try {
      const held = JSON.parse((await this.store.get(key)).toString('utf8')) as { owner?: string };
      if (held.owner === this.owner) await this.store.delete(key);
    } catch {
      /* already gone */
    }
  }
}

/** The lease as a conditional write on the catalog (the offsite compaction function's). */
export class CatalogLease implements Lease {
  private readonly catalog: Catalog;
  private readonly safe: string;
  readonly owner: string;
  private readonly ttlMs: number;
  private readonly now: () => Date;

  constructor(
    catalog: Catalog,
    safe: string,
    owner: string,
    ttlMs: number,
    now: () => Date = () => new Date(),
  ) {
    this.catalog = catalog;
    this.safe = safe;
    this.owner = owner;
    this.ttlMs = ttlMs;
    this.now = now;
  }

  /** Takes the lease, or extends it for the same owner. */
  async acquire(): Promise<void> {
    const t = this.now();
    const until = new Date(t.getTime() + this.ttlMs).toISOString();
    if (!(await this.catalog.acquireCompactionLease(this.safe, this.owner, until, t.toISOString())))
      throw new LeaseBusyError(this.safe, 'another compaction', 'its lease expires');
  }

  async release(): Promise<void> {
    await this.catalog.releaseCompactionLease(this.safe, this.owner);
  }
}
