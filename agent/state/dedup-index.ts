/**
 * Where each stored block of a safe lives, by identity: stored once per safe (fixed-block dedup).
 * Persisted as an append-only file of 68-byte records (identity 32 | segment 32 | frame u32),
 * appended as each segment becomes durable, so a run killed mid-way leaves the index pointing at
 * the segments it did finish: the next run references them instead of uploading them again.
 * Rebuilt from the safe's segment footers when missing; pruned of segments the safe no longer has.
 *
 * In memory it is an open-addressing hash table in one Buffer, off the JS heap: 40-byte slots
 * (identity 32 | segment number + 1 u32, 0 = empty | frame u32), at most 5/8 full, about 64-128
 * bytes per block stored, and nothing for the garbage collector to trace. Identities are SHA-256
 * (or HMAC-SHA256) values, so their first bytes are already a uniform hash.
 */
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';

const RECORD = 68;
const SLOT = 40;
const MIN_SLOTS = 4096;

export interface Location {
  readonly segment: string;
  readonly frame: number;
}

export class DedupIndex {
  private readonly file: string | undefined;
  private table = Buffer.alloc(MIN_SLOTS * SLOT);
  private mask = MIN_SLOTS - 1;
  private count = 0;
  /** Segment ids by number (a slot stores number + 1), and numbers by id. */
  private segments: string[] = [];
  private segmentNumbers = new Map<string, number>();

  constructor(file?: string) {
    this.file = file;
  }

  get size(): number {
    return this.count;
  }

  /** Loads the persisted index; false when there is none. */
  load(): boolean {
    if (!this.file || !existsSync(this.file)) return false;
    const b = readFileSync(this.file);
    // a later record of an identity wins (it replaced a frame found unusable)
    for (let o = 0; o + RECORD <= b.length; o += RECORD)
      this.addPending(b.subarray(o, o + 32), {
        segment: b.toString('hex', o + 32, o + 64),
        frame: b.readUInt32LE(o + 64),
      });
    return true;
  }

  get(identity: Uint8Array): Location | undefined {
    const slot = this.find(identity);
    if (slot < 0) return undefined;
    const o = slot * SLOT;
    return {
      segment: this.segments[this.table.readUInt32LE(o + 32) - 1]!,
      frame: this.table.readUInt32LE(o + 36),
    };
  }

  /**
   * Records a frame of a segment still being written (memory only; it is persisted once durable),
   * replacing an entry the caller found unusable (a damaged frame, a bad segment).
   */
  addPending(identity: Uint8Array, loc: Location): void {
    const at = this.find(identity);
    if (at >= 0) {
      const o = at * SLOT;
      this.table.writeUInt32LE(this.segmentNumber(loc.segment) + 1, o + 32);
      this.table.writeUInt32LE(loc.frame, o + 36);
      return;
    }
    this.insert(identity, this.segmentNumber(loc.segment), loc.frame);
  }

  /** Adds the frames of a durable segment, in memory and on disk. */
  addSegment(segment: string, identities: readonly Uint8Array[]): void {
    const n = this.segmentNumber(segment);
    const b = Buffer.alloc(identities.length * RECORD);
    identities.forEach((id, frame) => {
      this.insert(id, n, frame);
      b.set(id.subarray(0, 32), frame * RECORD);
      b.write(segment, frame * RECORD + 32, 'hex');
      b.writeUInt32LE(frame, frame * RECORD + 64);
    });
    if (this.file) {
      try {
        appendFileSync(this.file, b);
      } catch (e) {
        throw Object.assign(e as Error, { path: this.file }); // a write by descriptor names no file
      }
    }
  }

  /** Drops entries of segments not in `present`; rewrites the file when anything was dropped. */
  prune(present: ReadonlySet<string>): number {
    const gone = new Set<number>();
    this.segments.forEach((s, i) => {
      if (!present.has(s)) gone.add(i + 1);
    });
    if (gone.size === 0) return 0;
    const old = this.table;
    const before = this.count;
    this.reset(this.count);
    const segments = this.segments;
    this.segments = [];
    this.segmentNumbers = new Map();
    for (let o = 0; o < old.length; o += SLOT) {
      const s = old.readUInt32LE(o + 32);
      if (s === 0 || gone.has(s)) continue;
      this.insert(old.subarray(o, o + 32), this.segmentNumber(segments[s - 1]!), old.readUInt32LE(o + 36));
    }
    const dropped = before - this.count;
    if (dropped > 0 && this.file) this.rewrite();
    return dropped;
  }

  clear(): void {
    this.reset(0);
    this.segments = [];
    this.segmentNumbers = new Map();
    if (this.file) writeFileSync(this.file, Buffer.alloc(0));
  }

  private segmentNumber(segment: string): number {
    let n = this.segmentNumbers.get(segment);
    if (n === undefined) {
      n = this.segments.push(segment) - 1;
      this.segmentNumbers.set(segment, n);
    }
    return n;
  }

  /** An empty table with room for `entries` (at most 5/8 full). */
  private reset(entries: number): void {
    let slots = MIN_SLOTS;
    while (entries * 8 > slots * 5) slots *= 2;
    this.table = Buffer.alloc(slots * SLOT);
    this.mask = slots - 1;
    this.count = 0;
  }

  /** The slot holding `identity`, or -1 - (the empty slot where it would go). */
  private find(identity: Uint8Array): number {
    const t = this.table;
    let i = (identity[0]! | (identity[1]! << 8) | (identity[2]! << 16) | (identity[3]! << 24)) & this.mask;
    for (;;) {
      const o = i * SLOT;
      if (t.readUInt32LE(o + 32) === 0) return -1 - i;
      if (t.compare(identity, 0, 32, o, o + 32) === 0) return i;
      i = (i + 1) & this.mask;
    }
  }

  /** Adds identity → (segment number, frame) unless the identity is already there (first wins). */
  private insert(identity: Uint8Array, segment: number, frame: number): void {
    const at = this.find(identity);
    if (at >= 0) return;
    const o = (-1 - at) * SLOT;
    this.table.set(identity.subarray(0, 32), o);
    this.table.writeUInt32LE(segment + 1, o + 32);
    this.table.writeUInt32LE(frame, o + 36);
    if (++this.count * 8 > (this.mask + 1) * 5) this.grow();
  }

  private grow(): void {
    const old = this.table;
    this.reset(this.count + 1);
    for (let o = 0; o < old.length; o += SLOT) {
      const s = old.readUInt32LE(o + 32);
      if (s !== 0) this.insert(old.subarray(o, o + 32), s - 1, old.readUInt32LE(o + 36));
    }
  }

  private rewrite(): void {
    const b = Buffer.alloc(this.count * RECORD);
    let r = 0;
    for (let o = 0; o < this.table.length; o += SLOT) {
      const s = this.table.readUInt32LE(o + 32);
      if (s === 0) continue;
      this.table.copy(b, r, o, o + 32);
      b.write(this.segments[s - 1]!, r + 32, 'hex');
      b.writeUInt32LE(this.table.readUInt32LE(o + 36), r + 64);
      r += RECORD;
    }
    writeFileSync(this.file!, b);
  }
}
