/**
 * Where each stored block of a safe lives, by identity: stored once per safe (fixed-block dedup).
 * Persisted as an append-only file of 68-byte records (identity 32 | segment 32 | frame u32),
 * appended as each segment becomes durable, so a run killed mid-way leaves the index pointing at
 * the segments it did finish: the next run references them instead of uploading them again.
 * Rebuilt from the safe's segment footers when missing; pruned of segments the safe no longer has.
 */
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';

const RECORD = 68;

export interface Location {
  readonly segment: string;
  readonly frame: number;
}

export class DedupIndex {
  private readonly map = new Map<string, Location>();
  private readonly file: string | undefined;

  constructor(file?: string) {
    this.file = file;
  }

  get size(): number {
    return this.map.size;
  }

  /** Loads the persisted index; false when there is none. */
  load(): boolean {
    if (!this.file || !existsSync(this.file)) return false;
    const b = readFileSync(this.file);
    for (let o = 0; o + RECORD <= b.length; o += RECORD) {
      this.map.set(b.toString('base64', o, o + 32), {
        segment: b.toString('hex', o + 32, o + 64),
        frame: b.readUInt32LE(o + 64),
      });
    }
    return true;
  }

  get(identity: Uint8Array): Location | undefined {
    return this.map.get(Buffer.from(identity.buffer, identity.byteOffset, 32).toString('base64'));
  }

  /** Adds a frame of a segment still being written (memory only; it is persisted once durable). */
  addPending(identity: Uint8Array, loc: Location): void {
    const k = Buffer.from(identity.buffer, identity.byteOffset, 32).toString('base64');
    if (!this.map.has(k)) this.map.set(k, loc);
  }

  /** Adds the frames of a durable segment, in memory and on disk. */
  addSegment(segment: string, identities: readonly Uint8Array[]): void {
    const b = Buffer.alloc(identities.length * RECORD);
    identities.forEach((id, frame) => {
      const k = Buffer.from(id.buffer, id.byteOffset, 32);
      if (!this.map.has(k.toString('base64'))) this.map.set(k.toString('base64'), { segment, frame });
      k.copy(b, frame * RECORD);
      b.write(segment, frame * RECORD + 32, 'hex');
      b.writeUInt32LE(frame, frame * RECORD + 64);
    });
    if (this.file) appendFileSync(this.file, b);
  }

  /** Drops entries of segments not in `present`; rewrites the file when anything was dropped. */
  prune(present: ReadonlySet<string>): number {
    let dropped = 0;
    for (const [k, v] of this.map) {
      if (!present.has(v.segment)) {
        this.map.delete(k);
        dropped++;
      }
    }
    if (dropped > 0 && this.file) this.rewrite();
    return dropped;
  }

  clear(): void {
    this.map.clear();
    if (this.file) writeFileSync(this.file, Buffer.alloc(0));
  }

  private rewrite(): void {
    const b = Buffer.alloc(this.map.size * RECORD);
    let o = 0;
    for (const [k, v] of this.map) {
      Buffer.from(k, 'base64').copy(b, o);
      b.write(v.segment, o + 32, 'hex');
      b.writeUInt32LE(v.frame, o + 64);
      o += RECORD;
    }
    writeFileSync(this.file!, b);
  }
}
