/**
 * Segments that are durable in the safe but not yet named by any manifest: those of the run in
 * progress, and those left by a run that was killed. A resumed run references their frames through
 * the dedup index instead of uploading them again; the manifest that first references a segment
 * lists it. Cleared once a manifest commits.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Extent } from '#core/format/block-map.ts';

export interface SegmentRecord {
  readonly id: string;
  readonly key: string;
  readonly bytes: number;
  readonly frames: number;
}

export class UncommittedSegments {
  private readonly file: string;
  private readonly list: SegmentRecord[];

  /** Loads the records, keeping only segments the safe still has. */
  constructor(file: string, present: ReadonlySet<string>) {
    this.file = file;
    let loaded: SegmentRecord[] = [];
    try {
      loaded = JSON.parse(readFileSync(file, 'utf8')) as SegmentRecord[];
    } catch {
      /* none yet */
    }
    this.list = loaded.filter((s) => present.has(s.id));
  }

  get resumable(): readonly SegmentRecord[] {
    return this.list;
  }

  add(s: SegmentRecord): void {
    this.list.push(s);
    this.save();
  }

  /** The uncommitted segments that these extents reference, in the order they were written. */
  referencedBy(extents: readonly Extent[]): SegmentRecord[] {
    const used = new Set(extents.flatMap((e) => (e.kind === 'data' ? [e.segment] : [])));
    return this.list.filter((s) => used.has(s.id));
  }

  clear(): void {
    this.list.length = 0;
    this.save();
  }

  private save(): void {
    writeFileSync(`${this.file}.tmp`, JSON.stringify(this.list));
    renameSync(`${this.file}.tmp`, this.file);
  }
}
