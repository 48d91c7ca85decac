/**
 * Where a restore reads segment bytes: the safe's own store (a directory, or S3 with the agent's
 * credentials), or the presigned GET URLs of a restore plan from the restore function (the
 * restoring host then needs no read access to the bucket).
 */

import { contentRangeSize, readStreamInto, viewOf } from '#core/bytes.ts';
import {
  parseSegmentIndex,
  SEGMENT_FOOTER_READ,
  type SegmentEntry,
  segmentSizeFromTail,
  splitSegmentFooter,
} from '#core/format/segment.ts';
import { segmentKey } from '#core/keys.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import type { SafeReader } from '#core/safe-reader.ts';
import { READ_TIMEOUT_MS, retryableStatus } from './range-fetch.ts';

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
  /**
   * A URL the restore's workers can GET ranges of the segment from themselves (a presigned URL),
   * when the source is reachable over HTTP; they report the bytes with `counted`.
   */
  url?(segment: string): Promise<string | undefined>;
  counted?(bytes: number): void;
}

/** How long a presigned URL made for one streamed read of a restore lives. */
const STREAM_URL_SECONDS = 3600;

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
  async url(segment: string): Promise<string | undefined> {
    return this.reader.store.presignGet?.(segmentKey(this.reader.safe, segment), STREAM_URL_SECONDS);
  }
  counted(bytes: number): void {
    this.counter.bytes += bytes;
  }
}

export class UrlFetchError extends Error {
  /** Not worth retrying (the server refused the request itself). */
  readonly final: boolean;
  constructor(message: string, final = false) {
    super(message);
    this.final = final;
  }
}

/** Segment reads through presigned URLs, with retries; `urlOf` gives the current URL of a segment. */
export class UrlSource implements SegmentSource {
  private readonly urlOf: (segment: string) => string;
  private readonly safe: string;
  private readonly footers = new Map<string, Promise<SegmentEntry[]>>();
  fetchedBytes = 0;
  /** `safe`: the safe the plan is of (a segment's footer must bind it). */
  constructor(urlOf: (segment: string) => string, safe: string) {
    this.urlOf = urlOf;
    this.safe = safe;
  }

  /** Runs `f` up to 5 times, backing off, until it succeeds or fails for good (an HTTP 4xx). */
  private async retried<T>(f: () => Promise<T>): Promise<T> {
    let last: unknown;
    for (let attempt = 0; attempt < 5; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
      try {
        return await f();
      } catch (e) {
        last = e;
        if (e instanceof UrlFetchError && e.final) break;
      }
    }
    throw last instanceof Error ? last : new UrlFetchError(String(last));
  }

  /** The response to a ranged GET of the segment's URL, once it has answered 200 or 206. */
  private async respond(segment: string, range: string): Promise<Response> {
    const res = await fetch(this.urlOf(segment), {
      headers: { Range: range },
      signal: AbortSignal.timeout(READ_TIMEOUT_MS),
    });
    if (res.status === 206 || res.status === 200) return res;
    const body = await res.text();
    throw new UrlFetchError(
      `segment ${segment} ${range}: HTTP ${res.status} ${body.slice(0, 200)}`,
      !retryableStatus(res.status),
    );
  }

  private get(segment: string, range: string, into?: Buffer): Promise<{ bytes: Buffer; size?: number }> {
    return this.retried(async () => {
      const res = await this.respond(segment, range);
      const b =
        into && res.body
          ? await readStreamInto(res.body, into, `segment ${segment} ${range}`)
          : Buffer.from(await res.arrayBuffer());
      this.fetchedBytes += b.length;
      // a 200 is the whole object
      const size = contentRangeSize(res.headers.get('content-range'));
      return { bytes: b, size: size ?? (res.status === 200 ? b.length : undefined) };
    });
  }

  async range(segment: string, offset: number, length: number, into?: Uint8Array): Promise<Buffer> {
    const { bytes: b } = await this.get(
      segment,
      `bytes=${offset}-${offset + length - 1}`,
      into && viewOf(into, length),
    );
    if (b.length !== length) {
      throw new UrlFetchError(
        `segment ${segment}: asked ${length} bytes at ${offset}, got ${b.length} (truncated?)`,
      );
    }
    return b;
  }

  async url(segment: string): Promise<string> {
    return this.urlOf(segment);
  }

  counted(bytes: number): void {
    this.fetchedBytes += bytes;
  }

  entries(segment: string): Promise<SegmentEntry[]> {
    let p = this.footers.get(segment);
    if (!p) {
      p = (async () => {
        // one read from the end: the trailer and, for a segment of ordinary size, its whole index
        const t = await this.get(segment, `bytes=-${SEGMENT_FOOTER_READ}`);
        const size = t.size ?? segmentSizeFromTail(t.bytes);
        const { trailer, index } = splitSegmentFooter(t.bytes, size);
        return parseSegmentIndex(
          index ?? (await this.range(segment, trailer.indexOffset, trailer.indexLength)),
          trailer,
          { segment, safe: this.safe },
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
    getTail: async (k, l) => {
      const t = await store.getTail(k, l);
      counter.bytes += t.bytes.length;
      return t;
    },
    head: (k) => store.head(k),
    ...(store.filePath ? { filePath: (k: string) => store.filePath!(k) } : {}),
    ...(store.presignGet ? { presignGet: (k: string, s: number) => store.presignGet!(k, s) } : {}),
    put: (k, b) => store.put(k, b),
    putIfAbsent: (k, b) => store.putIfAbsent(k, b),
    list: (p) => store.list(p),
    openWriter: (k) => store.openWriter(k),
    delete: (k) => store.delete(k),
    restamp: (k, b, v) => store.restamp(k, b, v),
    cleanTemporaries: (before) => store.cleanTemporaries(before),
  };
}
