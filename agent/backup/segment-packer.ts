/**
 * Packs frames into segments of about `targetBytes` and writes each through the ObjectStore.
 * A finished segment is reported through `onDurable` only once the store says it is durable; the
 * next segment fills while the previous one is still uploading.
 *
 * `add` hands the frame to the segment's ObjectWriter, which copies it into its own staging or
 * part buffers before it resolves, so the caller may reuse the frame's memory at once.
 */
import { randomBytes } from 'node:crypto';
import {
  SEGMENT_HEADER_BYTES,
  type SegmentEntry,
  segmentFooter,
  segmentHeader,
} from '#core/format/segment.ts';
import { segmentKey } from '#core/keys.ts';
import type { ObjectStore, ObjectWriter } from '#core/ports/object-store.ts';
import type { RateLimiter } from './rate-limiter.ts';

export interface DurableSegment {
  readonly id: string;
  readonly key: string;
  readonly bytes: number;
  readonly frames: number;
  /** The identity of each frame, in frame order. */
  readonly identities: readonly Uint8Array[];
}

export interface PackerOptions {
  readonly targetBytes: number;
  readonly encrypted: boolean;
  readonly limiter?: RateLimiter;
  /** Called for each segment once durable (before `close` resolves). */
  readonly onDurable: (s: DurableSegment) => Promise<void> | void;
  /** Segments allowed to be finishing (uploading their tail) at once. @default 2 */
  readonly maxFinishing?: number;
}

/**
 * The index entries of an open segment, off the JS heap (a segment may hold tens of thousands of
 * frames): identities 32 bytes each, and offset, frame length, plain length as three numbers.
 */
class Entries {
  count = 0;
  private ids = Buffer.allocUnsafeSlow(256 * 32);
  private nums = new Float64Array(256 * 3);

  push(identity: Uint8Array, offset: number, frameLength: number, plainLength: number): void {
    if (this.count * 32 === this.ids.length) {
      const ids = Buffer.allocUnsafeSlow(this.ids.length * 2);
      this.ids.copy(ids);
      this.ids = ids;
      const nums = new Float64Array(this.nums.length * 2);
      nums.set(this.nums);
      this.nums = nums;
    }
    this.ids.set(identity.subarray(0, 32), this.count * 32);
    this.nums[this.count * 3] = offset;
    this.nums[this.count * 3 + 1] = frameLength;
    this.nums[this.count * 3 + 2] = plainLength;
    this.count++;
  }

  identity(i: number): Buffer {
    return this.ids.subarray(i * 32, i * 32 + 32);
  }

  /** As the segment footer takes them (built when the segment is finished). */
  list(): SegmentEntry[] {
    return Array.from({ length: this.count }, (_, i) => ({
      identity: this.identity(i),
      offset: this.nums[i * 3]!,
      frameLength: this.nums[i * 3 + 1]!,
      plainLength: this.nums[i * 3 + 2]!,
    }));
  }
}

interface Open {
  readonly id: string;
  readonly key: string;
  readonly writer: ObjectWriter;
  readonly entries: Entries;
  /** Bytes of the segment so far. */
  size: number;
}

export class SegmentPacker {
  private readonly store: ObjectStore;
  private readonly safe: string;
  private readonly opts: PackerOptions;
  private current: Open | undefined;
  private finishing: Promise<void>[] = [];
  /** The first segment that failed to finish: every later add and close throws it. */
  private failed: { error: unknown } | undefined;
  /** Bytes of the segments that are durable. */
  durableBytes = 0;

  constructor(store: ObjectStore, safe: string, opts: PackerOptions) {
    this.store = store;
    this.safe = safe;
    this.opts = opts;
  }

  private async write(o: Open, b: Uint8Array): Promise<void> {
    o.size += b.length;
    if (this.opts.limiter) await this.opts.limiter.take(b.length);
    await o.writer.write(b);
  }

  private async open(): Promise<Open> {
    const id = randomBytes(32).toString('hex');
    const key = segmentKey(this.safe, id);
    const o: Open = {
      id,
      key,
      writer: this.store.openWriter(key),
      entries: new Entries(),
      size: 0,
    };
    await this.write(o, segmentHeader(this.opts.encrypted));
    return o;
  }

  /** Adds one frame; returns where it lives (segment id and frame number). */
  async add(
    frame: Uint8Array,
    identity: Uint8Array,
    plainLength: number,
  ): Promise<{ segment: string; frame: number }> {
    this.throwIfFailed();
    this.current ??= await this.open();
    const o = this.current;
    const index = o.entries.count;
    o.entries.push(identity, o.size, frame.length, plainLength);
    await this.write(o, frame);
    if (o.size >= this.opts.targetBytes) await this.rotate();
    return { segment: o.id, frame: index };
  }

  private async rotate(): Promise<void> {
    const o = this.current;
    this.current = undefined;
    if (!o) return;
    const max = this.opts.maxFinishing ?? 4;
    while (this.finishing.length >= max) await Promise.race(this.finishing);
    // a failure is kept, not just left in `finishing` (which forgets a settled finish): a segment
    // that failed while the next ones filled must fail the backup, never leave a hole in it
    const p: Promise<void> = this.finish(o)
      .catch((error: unknown) => {
        this.failed ??= { error };
      })
      .finally(() => {
        this.finishing = this.finishing.filter((x) => x !== p);
      });
    this.finishing.push(p);
  }

  private throwIfFailed(): void {
    if (this.failed) throw this.failed.error;
  }

  private async finish(o: Open): Promise<void> {
    let info: { size: number };
    try {
      if (o.size < SEGMENT_HEADER_BYTES) throw new Error('segment without header');
      await this.write(o, segmentFooter(o.entries.list(), o.size, { segment: o.id, safe: this.safe }));
      info = await o.writer.finish();
    } catch (e) {
      // release what the writer holds (a file handle, a multipart upload); nothing became visible
      await o.writer.abort().catch(() => undefined);
      throw e;
    }
    this.durableBytes += info.size;
    const frames = o.entries.count;
    await this.opts.onDurable({
      id: o.id,
      key: o.key,
      bytes: info.size,
      frames,
      identities: Array.from({ length: frames }, (_, i) => o.entries.identity(i)),
    });
  }

  /** Finishes the open segment and waits until every segment is durable. */
  async close(): Promise<void> {
    if (this.current && this.current.entries.count > 0) await this.rotate();
    else if (this.current) {
      await this.current.writer.abort();
      this.current = undefined;
    }
    await Promise.all(this.finishing);
    this.throwIfFailed();
  }

  /** Abandons the open segment (nothing of it becomes visible). */
  async abort(): Promise<void> {
    await this.current?.writer.abort();
    this.current = undefined;
    await Promise.allSettled(this.finishing);
  }
}
