import type {
  Catalog,
  CommitOutcome,
  ExpiredRpRecord,
  GenerationRecord,
  QuarantineRecord,
  RpRecord,
  SafeRecord,
  SegmentRecord,
  WaitingChild,
} from '#core/ports/catalog.ts';

/** In-memory Catalog for unit tests of pure logic; follows the port's contract. */
export class MemoryCatalog implements Catalog {
  readonly safes = new Map<string, SafeRecord>();
  readonly rps = new Map<string, RpRecord>();
  readonly segments = new Map<string, SegmentRecord>();
  readonly waiting = new Map<string, WaitingChild>();
  readonly quarantined = new Map<string, QuarantineRecord>();
  writes = 0;

  private touch(safe: string, now: string, patch: Partial<SafeRecord> = {}): SafeRecord {
    const cur = this.safes.get(safe) ?? {
      safe,
      committedRps: 0,
      storedBytes: 0,
      quarantined: 0,
      firstSeenAt: now,
    };
    const next = { ...cur, ...patch };
    this.safes.set(safe, next);
    return next;
  }

  async getSafe(safe: string) {
    return this.safes.get(safe);
  }
  async listSafes() {
    return [...this.safes.values()].sort((a, b) => a.safe.localeCompare(b.safe));
  }
  async setRpoTarget(safe: string, seconds: number, now: string) {
    this.writes++;
    this.touch(safe, now, { rpoTargetSeconds: seconds });
  }
  async getRp(safe: string, rp: number) {
    return this.rps.get(`${safe}#${rp}`);
  }
  async listRps(safe: string, opts: { fromRp?: number; limit?: number } = {}) {
    return [...this.rps.values()]
      .filter((r) => r.safe === safe && r.rp >= (opts.fromRp ?? 1))
      .sort((a, b) => a.rp - b.rp)
      .slice(0, opts.limit);
  }
  async rpAtOrBefore(safe: string, time: string) {
    return [...this.rps.values()]
      .filter((r) => r.safe === safe && r.state === 'committed' && (r.createdAt ?? '') <= time)
      .sort((a, b) => (a.createdAt! < b.createdAt! ? -1 : a.createdAt! > b.createdAt! ? 1 : a.rp - b.rp))
      .pop();
  }
  async getSegments(safe: string, ids: readonly string[]) {
    const out = new Map<string, SegmentRecord>();
    for (const id of ids) {
      const s = this.segments.get(`${safe}#${id}`);
      if (s) out.set(id, s);
    }
    return out;
  }
  async putSegments(segments: readonly SegmentRecord[]) {
    for (const s of segments) {
      this.writes++;
      const k = `${s.safe}#${s.id}`;
      if (!this.segments.has(k)) this.segments.set(k, s);
    }
  }
  async commitRp(rp: RpRecord & { state: 'committed' }): Promise<CommitOutcome> {
    const k = `${rp.safe}#${rp.rp}`;
    const state = this.rps.get(k)?.state;
    if (state === 'committed' || state === 'expired') return 'already-committed';
    this.writes += rp.parent === null ? 2 : 3;
    this.rps.set(k, rp);
    const cur = this.touch(rp.safe, rp.updatedAt);
    const newer = cur.newestRp === undefined || cur.newestRp < rp.rp;
    this.touch(rp.safe, rp.updatedAt, {
      committedRps: cur.committedRps + 1,
      storedBytes: cur.storedBytes + (rp.storedBytes ?? 0),
      ...(newer ? { newestRp: rp.rp, newestRpCreatedAt: rp.createdAt } : {}),
    });
    if (rp.parent !== null) this.waiting.delete(`${rp.safe}#${rp.parent}#${rp.rp}`);
    return 'committed';
  }
  async markWaiting(rp: RpRecord & { state: 'waiting' }) {
    this.writes += 3;
    this.waiting.set(`${rp.safe}#${rp.parent}#${rp.rp}`, {
      safe: rp.safe,
      rp: rp.rp,
      parent: rp.parent!,
      manifestKey: rp.manifestKey,
    });
    const k = `${rp.safe}#${rp.rp}`;
    if (!this.settled(k)) this.rps.set(k, rp);
    this.touch(rp.safe, rp.updatedAt);
  }
  async waitingChildren(safe: string, parent: number) {
    return [...this.waiting.values()].filter((w) => w.safe === safe && w.parent === parent);
  }
  async quarantineUpload(q: QuarantineRecord) {
    if (this.quarantined.has(q.key)) return;
    this.writes++;
    this.quarantined.set(q.key, q);
    if (q.safe === undefined) return;
    if (q.rp !== undefined) {
      const k = `${q.safe}#${q.rp}`;
      if (!this.settled(k)) {
        this.rps.set(k, {
          safe: q.safe,
          rp: q.rp,
          state: 'quarantined',
          parent: null,
          updatedAt: q.quarantinedAt,
          manifestKey: q.key,
          reason: q.reason,
        });
      }
    }
    const cur = this.touch(q.safe, q.quarantinedAt);
    this.touch(q.safe, q.quarantinedAt, { quarantined: cur.quarantined + 1 });
  }
  async listQuarantined(safe?: string) {
    return [...this.quarantined.values()]
      .filter((q) => safe === undefined || q.safe === safe)
      .sort((a, b) => a.key.localeCompare(b.key));
  }

  /** A committed or expired RP: waiting and quarantine leave it as it is. */
  private settled(k: string): boolean {
    const state = this.rps.get(k)?.state;
    return state === 'committed' || state === 'expired';
  }

  async expireRp(e: ExpiredRpRecord) {
    const k = `${e.safe}#${e.rp}`;
    const r = this.rps.get(k);
    if (r?.state === 'expired' || r?.state === 'quarantined') return;
    this.writes += 2;
    if (r?.state === 'committed') {
      this.rps.set(k, { ...r, state: 'expired', updatedAt: e.at });
      const s = this.touch(e.safe, e.at);
      this.touch(e.safe, e.at, { committedRps: s.committedRps - 1 });
      return;
    }
    this.rps.set(k, {
      safe: e.safe,
      rp: e.rp,
      state: 'expired',
      parent: e.parent,
      updatedAt: e.at,
      manifestKey: e.manifestKey,
      ...(e.createdAt !== undefined ? { createdAt: e.createdAt } : {}),
    });
    if (e.parent !== null) this.waiting.delete(`${e.safe}#${e.parent}#${e.rp}`);
    this.touch(e.safe, e.at);
  }

  async recordGeneration(g: GenerationRecord) {
    await this.putSegments(g.written);
    for (const rp of g.expired) {
      const r = this.rps.get(`${g.safe}#${rp}`);
      if (r?.state !== 'committed' && r?.state !== 'waiting') continue;
      await this.expireRp({
        safe: g.safe,
        rp,
        parent: r.parent,
        generation: g.generation,
        manifestKey: r.manifestKey,
        ...(r.createdAt !== undefined ? { createdAt: r.createdAt } : {}),
        at: g.at,
      });
    }
    for (const c of g.condemned) {
      const seg = this.segments.get(`${g.safe}#${c.id}`);
      if (seg) this.segments.set(`${g.safe}#${c.id}`, { ...seg, condemnedIn: c.generation });
    }
    for (const id of g.revived) {
      const seg = this.segments.get(`${g.safe}#${id}`);
      if (seg) {
        const { condemnedIn: _c, ...rest } = seg;
        this.segments.set(`${g.safe}#${id}`, rest);
      }
    }
    const s = this.touch(g.safe, g.at);
    if ((s.generation ?? 0) < g.generation)
      this.touch(g.safe, g.at, { generation: g.generation, compactedUpTo: g.upTo, retention: g.retention });
  }
  async markSegmentsDeleted(safe: string, ids: readonly string[], at: string) {
    for (const id of ids) {
      const seg = this.segments.get(`${safe}#${id}`);
      if (seg && !seg.deletedAt) this.segments.set(`${safe}#${id}`, { ...seg, deletedAt: at });
    }
  }
}
