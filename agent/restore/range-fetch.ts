/**
 * Ranged reads of one segment over HTTP (a presigned URL), run by a restore's decode workers so
 * that receiving, like decoding, happens on every core and no byte passes through the main
 * thread. One streamed GET covers a span of ranges (offsets increasing, gaps skipped); each range
 * is handed over as soon as its bytes have arrived, and while it is being handled the response
 * waits (backpressure). A stream that breaks is opened again from the first range not yet handed
 * over; one that answers wrongly (4xx, a 200 that ignored the range) is not.
 */
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { ByteCursor } from '#core/bytes.ts';

/** A read fails when its server sends nothing for this long (and is opened again). */
export const READ_TIMEOUT_MS = 120_000;
/** Attempts in a row that make no progress before a streamed read gives up. */
const STREAM_ATTEMPTS = 3;

/** Whether an HTTP error answer is worth another attempt (a server error or throttling), not a refusal. */
export const retryableStatus = (status: number): boolean => status >= 500 || status === 429;

/**
 * The attempts of a resumable read: it gives up once `max` attempts in a row broke without
 * getting further than the one before (a link that works unsteadily keeps going).
 */
export class ResumeBudget {
  private readonly max: number;
  private failures = 0;
  private reached = 0;
  constructor(max = STREAM_ATTEMPTS) {
    this.max = max;
  }
  /** An attempt broke having reached `progress`: true when the read should give up. */
  exhausted(progress: number): boolean {
    if (progress > this.reached) this.failures = 0;
    this.reached = Math.max(this.reached, progress);
    return ++this.failures >= this.max;
  }
}

export class RangeFetchError extends Error {
  /** The HTTP status, when the server answered. */
  readonly status?: number;
  /** Not worth another attempt: the server refused or misread the request itself. */
  readonly final: boolean;
  constructor(message: string, final: boolean, status?: number) {
    super(message);
    this.final = final;
    this.status = status;
  }
}

export interface FetchRange {
  readonly offset: number;
  readonly length: number;
}

export interface RangeFetchOptions {
  /** @default READ_TIMEOUT_MS */
  readonly timeoutMs?: number;
  /** @default STREAM_ATTEMPTS */
  readonly attempts?: number;
  /** Names the object in messages. */
  readonly what?: string;
  /** Told of every chunk received (gaps and broken attempts included). */
  readonly onReceived?: (bytes: number) => void;
}

const agents = {
  'http:': new http.Agent({ keepAlive: true }),
  'https:': new https.Agent({ keepAlive: true }),
};

/** An error of the code handling the bytes, passed through as it is (never a reason to retry). */
class HandlerError {
  readonly cause: unknown;
  constructor(cause: unknown) {
    this.cause = cause;
  }
}

/** The response to `Range: bytes=first-last` of `url`, once it has answered 206 for that range. */
function openRange(
  url: URL,
  first: number,
  last: number,
  timeoutMs: number,
  what: string,
): Promise<IncomingMessage> {
  const range = `bytes=${first}-${last}`;
  return new Promise((resolve, reject) => {
    const get = url.protocol === 'https:' ? https.get : http.get;
    const agent = url.protocol === 'https:' ? agents['https:'] : agents['http:'];
    const req = get(url, { agent, headers: { Range: range } }, (res) => {
      const status = res.statusCode ?? 0;
      const answered = res.headers['content-range'];
      if (status === 206 && answered?.startsWith(`bytes ${first}-${last}/`)) {
        resolve(res);
        return;
      }
      if (status === 200 || status === 206) {
        // other bytes than the ones asked for: not worth reading, nor asking again
        res.destroy();
        reject(
          new RangeFetchError(
            `${what} ${range}: the server answered ${answered ?? 'without a range'}`,
            true,
            status,
          ),
        );
        return;
      }
      // an error answer: its (short) body says why; 5xx and 429 are worth another attempt
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        if (body.length < 300) body += c;
      });
      res.on('close', () =>
        reject(
          new RangeFetchError(
            `${what} ${range}: HTTP ${status} ${body.slice(0, 200)}`.trim(),
            !retryableStatus(status),
            status,
          ),
        ),
      );
    });
    // the socket's idle time: a long read fails only when nothing arrives for timeoutMs
    req.setTimeout(timeoutMs, () =>
      req.destroy(new RangeFetchError(`${what} ${range}: nothing arrived for ${timeoutMs} ms`, false)),
    );
    req.on('error', (e) =>
      reject(e instanceof RangeFetchError ? e : new RangeFetchError(`${what} ${range}: ${e.message}`, false)),
    );
  });
}

/**
 * Reads `ranges` of `url` (offsets increasing, none overlapping) with one streamed GET, opened
 * again where it broke: `into(i)` gives the buffer range `i` is read into (at least its length),
 * and `handle(i, bytes)` takes it before the next range is read. Rejects with a RangeFetchError
 * when the read fails for good, or with whatever `handle` threw.
 */
export async function fetchRanges(
  url: string,
  ranges: readonly FetchRange[],
  into: (i: number) => Uint8Array,
  handle: (i: number, bytes: Uint8Array) => Promise<void>,
  opts: RangeFetchOptions = {},
): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? READ_TIMEOUT_MS;
  const what = opts.what ?? 'object';
  const target = new URL(url);
  const budget = new ResumeBudget(opts.attempts);
  const end = ranges.length > 0 ? ranges[ranges.length - 1]!.offset + ranges[ranges.length - 1]!.length : 0;
  const onReceived = opts.onReceived ?? (() => undefined);
  let next = 0;
  while (next < ranges.length) {
    const start = ranges[next]!.offset;
    let cursor: ByteCursor | undefined;
    try {
      const res = await openRange(target, start, end - 1, timeoutMs, what);
      const counted = (async function* () {
        for await (const c of res as AsyncIterable<Buffer>) {
          onReceived(c.length);
          yield c;
        }
      })();
      cursor = new ByteCursor(counted, `${what} from ${start}`);
      for (; next < ranges.length; next++) {
        const r = ranges[next]!;
        await cursor.skip(r.offset - start - cursor.position);
        const bytes = into(next).subarray(0, r.length);
        await cursor.fill(bytes);
        await handle(next, bytes).catch((e: unknown) => {
          throw new HandlerError(e);
        });
      }
      // every byte asked for has come: let the response end, so its connection is reused
      await cursor.end();
      cursor = undefined;
    } catch (e) {
      if (e instanceof HandlerError) throw e.cause;
      const error =
        e instanceof RangeFetchError ? e : new RangeFetchError(`${what}: ${(e as Error).message}`, false);
      if (error.final || budget.exhausted(next)) throw error;
    } finally {
      await cursor?.close().catch(() => undefined);
    }
  }
}
