/** The restore workers' ranged reads over HTTP: exact bytes, reopening where a stream broke, and no retry of what cannot succeed. */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type FetchRange,
  fetchRanges,
  RangeFetchError,
  ResumeBudget,
} from '../../../agent/restore/range-fetch.ts';
import { type Fault, type RangeRequest, type RangeServer, rangeServer } from '../../support/range-server.ts';

const object = randomBytes(300_000);
let server: RangeServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function serve(fault?: (r: RangeRequest, n: number) => Fault | undefined): Promise<string> {
  server = await rangeServer((p) => (p === '/seg' ? object : undefined), fault);
  return server.url('/seg');
}

/** Reads `ranges`, returning what each handler call got and the bytes received. */
async function read(url: string, ranges: FetchRange[], opts: { timeoutMs?: number } = {}) {
  const got: Buffer[] = [];
  let received = 0;
  const buf = Buffer.alloc(Math.max(...ranges.map((r) => r.length)));
  await fetchRanges(
    url,
    ranges,
    () => buf,
    async (i, bytes) => {
      expect(got.length).toBe(i); // in order, each once
      got.push(Buffer.from(bytes));
    },
    { ...opts, onReceived: (n) => (received += n) },
  );
  return { got, received };
}

const ranges: FetchRange[] = [
  { offset: 16, length: 40_000 },
  { offset: 40_016, length: 1 },
  { offset: 50_000, length: 100_000 }, // after a gap
  { offset: 150_000, length: 149_999 },
];
const expected = ranges.map((r) => object.subarray(r.offset, r.offset + r.length));

describe('fetchRanges', () => {
  it('hands over every range exactly, in order, from one GET of the span', async () => {
    const url = await serve();
    const { got, received } = await read(url, ranges);
    expect(got).toEqual(expected);
    expect(server!.requests).toEqual([{ path: '/seg', first: 16, last: 299_998 }]);
    expect(received).toBe(299_999 - 16);
  });

  it('a stream cut short is opened again from the first range not handed over', async () => {
    // the first GET breaks inside the third range, the second inside the fourth
    const url = await serve((_, n) =>
      n <= 2 ? { kind: 'cut', afterBytes: n === 1 ? 60_000 : 110_000 } : undefined,
    );
    const { got } = await read(url, ranges);
    expect(got).toEqual(expected);
    expect(server!.requests.map((r) => r.first)).toEqual([16, 50_000, 150_000]);
  });

  it('gives up after three attempts in a row that get no further', async () => {
    const url = await serve(() => ({ kind: 'cut', afterBytes: 10 }));
    await expect(read(url, ranges)).rejects.toBeInstanceOf(RangeFetchError);
    expect(server!.requests.length).toBe(3);
  });

  it('a server error is tried again; a missing object or a refused request is not', async () => {
    let url = await serve((_, n) => (n === 1 ? { kind: 'status', status: 503 } : undefined));
    expect((await read(url, ranges)).got).toEqual(expected);
    await server!.close();
    server = await rangeServer(() => undefined);
    url = server.url('/seg');
    const missing = await read(url, ranges).catch((e: unknown) => e);
    expect(missing).toMatchObject({ status: 404, final: true });
    await server.close();
    url = await serve(() => ({ kind: 'status', status: 403 }));
    await expect(read(url, ranges)).rejects.toMatchObject({ status: 403, final: true });
    expect(server!.requests.length).toBe(1);
  });

  it('a server that ignores the range is refused at once (its bytes would be the wrong ones)', async () => {
    const url = await serve(() => ({ kind: 'ignore-range' }));
    await expect(read(url, ranges)).rejects.toThrow(/answered without a range/);
    expect(server!.requests.length).toBe(1);
  });

  it('a stream that goes quiet fails after the timeout and is opened again', async () => {
    const url = await serve((_, n) => (n === 1 ? { kind: 'stall' } : undefined));
    const { got } = await read(url, ranges, { timeoutMs: 300 });
    expect(got).toEqual(expected);
    expect(server!.requests.length).toBe(2);
  });

  it('an error of the handler ends the read as it is, without another attempt', async () => {
    const url = await serve();
    const buf = Buffer.alloc(200_000);
    await expect(
      fetchRanges(
        url,
        ranges,
        () => buf,
        async (i) => {
          if (i === 1) throw new Error('disk full');
        },
      ),
    ).rejects.toThrow('disk full');
    expect(server!.requests.length).toBe(1);
  });
});

describe('ResumeBudget', () => {
  it('gives up only after max failures in a row without progress', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 40 }), (steps) => {
        const budget = new ResumeBudget(3);
        let reached = 0;
        let stale = 0;
        let progress = 0;
        for (const step of steps) {
          progress += step;
          stale = progress > reached ? 1 : stale + 1;
          reached = Math.max(reached, progress);
          expect(budget.exhausted(progress)).toBe(stale >= 3);
          if (stale >= 3) return;
        }
      }),
    );
  });
});
