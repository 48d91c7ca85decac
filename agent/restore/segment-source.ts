/**
 * Where a restore reads segment bytes: the safe's own store (a directory, or S3 with the agent's
 * credentials), or the presigned GET URLs of a restore plan from the restore function (the
 * restoring host then needs no read access to the bucket).
 */

import { readStreamInto, viewOf } from '#core/bytes.ts';
import {
  parseSegmentIndex,
  parseSegmentTrailer,
  SEGMENT_TRAILER_BYTES,
  type SegmentEntry,
} from '#core/format/segment.ts';
import { segmentKey } from '#core/keys.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import type { SafeReader } from '#core/safe-reader.ts';

export interface SegmentSource {
  /** Bytes read so far (ranges and footers). */
  readonly fetchedBytes: number;
  /** `length` bytes at `offset` of the segment; read into `into` when given (at least `length` bytes). */
  range(segment: string, offset: number, length: number, into?: Uint8Array): Promise<Buffer>;
  /** The segment's footer index (for delta restore). */
  entries(segment: string): Promise<SegmentEntry[]>;
  /**
   * The segment's file, when the safe is a local directory: the restore's workers then read it
   * themselves (direct I/O, no copy through this thread) and report the bytes with `counted`.
   */
  localFile?(segment: string): string | undefined;
  counted?(bytes: number): void;
}

/** Reads through a SafeReader whose store is wrapped by `countingStore` (so footers count too). */
export class StoreSource implements SegmentSource {
  private readonly reader: SafeReader;
  private readonly counter: { bytes: number };
  constructor(reader: SafeReader, counter: { bytes: number }) {
    this.reader = reader;
    this.counter = counter;
  }
  get fetchedBytes(): number {
    return this.counter.bytes;
  }
  range(segment: string, offset: number, length: number, into?: Uint8Array): Promise<Buffer> {
    return this.reader.store.getRange(segmentKey(this.reader.safe, segment), offset, length, into);
  }
  entries(segment: string): Promise<SegmentEntry[]> {
    return this.reader.segmentEntries(segment);
  }
  localFile(segment: string): string | undefined {
    return this.reader.store.filePath?.(segmentKey(this.reader.safe, segment));
  }
  counted(bytes: number): void {
    this.counter.bytes += bytes;
  }
}

export class UrlFetchError extends Error {}

/** Segment reads through presigned URLs, with retries; `urlOf` gives the current URL of a segment. */
export class UrlSource implements SegmentSource {
  private readonly urlOf: (segment: string) => string;
  private readonly footers = new Map<string, Promise<SegmentEntry[]>>();
  fetchedBytes = 0;
  constructor(urlOf: (segment: string) => string) {
    this.urlOf = urlOf;
  }

  private async get(segment: string, range: string, into?: Buffer): Promise<Buffer> {
    let last: unknown;
    for (let attempt = 0; attempt < 5; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
      try {
        const res = await fetch(this.urlOf(segment), {
          headers: { Range: range },
          signal: AbortSignal.timeout(120_000),
        });
        if (res.status === 206 || res.status === 200) {
          const b =
            into && res.body
              ? await readStreamInto(res.body, into, `segment ${segment} ${range}`)
              : Buffer.from(await res.arrayBuffer());
          this.fetchedBytes += b.length;
          return b;
        }
        const body = await res.text();
        last = new UrlFetchError(`segment ${segment} ${range}: HTTP ${res.status} ${body.slice(0, 200)}`);
        if (res.status < 500 && res.status !== 429) break;
      } catch (e) {
        last = e;
      }
    }
    throw last instanceof Error ? last : new UrlFetchError(String(last));
  }

  async range(segment: string, offset: number, length: number, into?: Uint8Array): Promise<Buffer> {
    const b = await this.get(segment, `bytes=${offset}-${offset + length - 1}`, into && viewOf(into, length));
    if (b.length !== length) {
      throw new UrlFetchError(
        `segment ${segment}: asked ${length} bytes at ${offset}, got ${b.length} (truncated?)`,
      );
    }
    return b;
  }

  entries(segment: string): Promise<SegmentEntry[]> {
    let p = this.footers.get(segment);
    if (!p) {
      p = (async () => {
        const t = await this.get(segment, `bytes=-${SEGMENT_TRAILER_BYTES}`);
        // the trailer says where the index is and, with its own offset, how long the segment is
        const indexOffset = Number(t.readBigUInt64LE(0));
        const size = indexOffset + t.readUInt32LE(8) + SEGMENT_TRAILER_BYTES;
        const trailer = parseSegmentTrailer(t, size);
        return parseSegmentIndex(
          await this.range(segment, trailer.indexOffset, trailer.indexLength),
          trailer,
        );
      })();
      this.footers.set(segment, p);
      p.catch(() => this.footers.delete(segment));
    }
    return p;
  }
}

/** An ObjectStore that counts the bytes its reads return. */
export function countingStore(store: ObjectStore, counter: { bytes: number }): ObjectStore {
  return {
    location: store.location,
    get: async (k) => {
      const b = await store.get(k);
      counter.bytes += b.length;
      return b;
    },
    getRange: async (k, o, l, into) => {
      const b = await store.getRange(k, o, l, into);
      counter.bytes += b.length;
      return b;
    },
    head: (k) => store.head(k),
    ...(store.filePath ? { filePath: (k: string) => store.filePath!(k) } : {}),
    put: (k, b) => store.put(k, b),
    putIfAbsent: (k, b) => store.putIfAbsent(k, b),
    list: (p) => store.list(p),
    openWriter: (k) => store.openWriter(k),
    delete: (k) => store.delete(k),
  };
}
