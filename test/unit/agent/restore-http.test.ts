/**
 * A restore from an HTTP source (presigned URLs), whose ranged reads the decode workers make
 * themselves: exact, resumed where a stream broke, and corruption or a missing segment named.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError } from '#core/errors.ts';
import { streamSpans } from '#core/restore-plan.ts';
import { CorruptBlockError, SafeReader } from '#core/safe-reader.ts';
import { localPages } from '../../../agent/restore/plans.ts';
import { PARTIAL_SUFFIX, runRestore } from '../../../agent/restore/run-restore.ts';
import { countingStore, type SegmentSource, StoreSource } from '../../../agent/restore/segment-source.ts';
import { type Fault, type RangeRequest, type RangeServer, rangeServer } from '../../support/range-server.ts';
import { BS, copySafe, DEVICE, makeRpFixture, type RpFixture } from '../../support/rp-fixture.ts';

let fx: RpFixture;
const dirs: string[] = [];
let server: RangeServer | undefined;
beforeAll(async () => {
  fx = await makeRpFixture('fx');
  dirs.push(fx.root);
});
afterEach(async () => {
  await server?.close();
  server = undefined;
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/**
 * A copy of the fixture's safe served over HTTP: its segments are read through URLs (as from a
 * restore plan's presigned URLs), footers and plans from the directory.
 */
async function served(
  fault?: (r: RangeRequest, n: number) => Fault | undefined,
  change?: (dir: string) => void,
) {
  const { dir, store } = copySafe(fx);
  dirs.push(dir);
  change?.(dir);
  server = await rangeServer((path) => {
    try {
      return readFileSync(join(dir, path));
    } catch {
      return undefined;
    }
  }, fault);
  const counter = { bytes: 0 };
  const reader = new SafeReader(countingStore(store, counter), 'fx');
  const inner = new StoreSource(reader, counter);
  const urlOf = (segment: string) => server!.url(`/seg/${segment.slice(0, 2)}/${segment}.seg`);
  const source: SegmentSource = {
    get fetchedBytes() {
      return inner.fetchedBytes;
    },
    range: (s, o, l, into) => inner.range(s, o, l, into),
    entries: (s) => inner.entries(s),
    url: async (s) => urlOf(s),
    counted: (n) => inner.counted(n),
  };
  const pages = () => localPages(reader, 2, DEVICE, { maxRangeBytes: 16 * 1024 });
  return { dir, reader, source, pages, to: join(dir, 'vol.img'), counter };
}

describe('restore from presigned URLs, read by the workers', () => {
  it('restores exactly, one GET per span of the plan, and counts the bytes', async () => {
    const t = await served();
    const r = await runRestore({ pages: t.pages(), source: t.source, to: t.to, parallel: 3 });
    expect(readFileSync(t.to).equals(fx.images[1])).toBe(true);
    let spans = 0;
    let bytes = 0;
    for await (const page of t.pages()) {
      for (const span of streamSpans(page.ranges)) {
        spans++;
        const last = span[span.length - 1]!;
        bytes += last.offset + last.length - span[0]!.offset;
      }
    }
    expect(server!.requests.length).toBe(spans);
    expect(r.fetchedBytes).toBeGreaterThanOrEqual(bytes); // the spans, plus the footers read for the plan
  });

  it('a stream that breaks is reopened where it stopped, and the restore is exact', async () => {
    const t = await served((r, n) =>
      n === 1 ? { kind: 'cut', afterBytes: Math.floor((r.last - r.first) / 2) } : undefined,
    );
    await runRestore({ pages: t.pages(), source: t.source, to: t.to, parallel: 2 });
    expect(readFileSync(t.to).equals(fx.images[1])).toBe(true);
    const byPath = new Map<string, RangeRequest[]>();
    for (const r of server!.requests) byPath.set(r.path, [...(byPath.get(r.path) ?? []), r]);
    let spans = 0;
    for await (const page of t.pages()) spans += streamSpans(page.ranges).length;
    // one GET per span of the plan, and one reopening per broken stream (each segment's first)
    expect(server!.requests.length).toBe(spans + byPath.size);
    for (const reqs of byPath.values()) {
      // the broken stream, then its reopening from where it stopped (never before where it began)
      expect(reqs.length).toBeGreaterThanOrEqual(2);
      expect(Math.min(...reqs.slice(1).map((r) => r.first))).toBeGreaterThanOrEqual(reqs[0]!.first);
    }
  });

  it('an interrupted restore leaves only a partial file, and running it again resumes it as a delta', async () => {
    let cutting = true;
    // the first stream works; every later one breaks halfway, until the restore gives up
    const t = await served((r) =>
      cutting && server!.requests.length > 1
        ? { kind: 'cut', afterBytes: Math.floor((r.last - r.first) / 2) }
        : undefined,
    );
    await expect(runRestore({ pages: t.pages(), source: t.source, to: t.to, parallel: 1 })).rejects.toThrow(
      /segment .*(socket hang up|aborted|ended after)/,
    );
    expect(server!.requests.length).toBeGreaterThanOrEqual(4); // a broken stream is opened again before the restore gives up
    expect(existsSync(t.to)).toBe(false);
    expect(existsSync(`${t.to}${PARTIAL_SUFFIX}`)).toBe(true);
    cutting = false;
    const r = await runRestore({ pages: t.pages(), source: t.source, to: t.to });
    expect(r.delta).toBe(true);
    expect(r.unchangedBlocks).toBeGreaterThan(0);
    expect(readFileSync(t.to).equals(fx.images[1])).toBe(true);
    expect(existsSync(`${t.to}${PARTIAL_SUFFIX}`)).toBe(false);
  });

  it('a delta restore over an older copy fetches only the differing blocks through the URLs', async () => {
    const httpBytes = () => server!.requests.reduce((n, q) => n + q.last - q.first + 1, 0);
    // a full restore of the RP, for comparison
    const full = await served();
    const f = await runRestore({ pages: full.pages(), source: full.source, to: join(full.dir, 'new.img') });
    expect(f.delta).toBe(false);
    const fullBytes = httpBytes();
    await server!.close();
    const t = await served();
    writeFileSync(t.to, fx.images[0]);
    const r = await runRestore({ pages: t.pages(), source: t.source, to: t.to });
    expect(r.delta).toBe(true);
    expect(readFileSync(t.to).equals(fx.images[1])).toBe(true);
    // exactly the stored blocks that differ from the older copy were fetched and written
    const [older, wanted] = [fx.images[0]!, fx.images[1]!];
    let differing = 0;
    for (let o = 0; o < wanted.length; o += BS) {
      const block = wanted.subarray(o, o + BS);
      if (block.some((b) => b !== 0) && !block.equals(older.subarray(o, o + BS))) differing++;
    }
    expect(differing).toBeGreaterThan(0);
    expect(r.dataBlocks - r.unchangedBlocks).toBe(differing);
    expect(r.unchangedBlocks).toBeGreaterThan(0);
    expect(server!.requests.length).toBeGreaterThan(0);
    expect(httpBytes()).toBeLessThan(fullBytes);
  });

  it('a flipped byte is named: device, block, RP and segment', async () => {
    let segment = '';
    const t = await served(undefined, (dir) => {
      const m = JSON.parse(readFileSync(join(dir, 'rp', '0000000001.json'), 'utf8'));
      segment = m.segments[0].id;
      const file = join(dir, m.segments[0].key.slice('safes/fx/'.length));
      const b = readFileSync(file);
      const at = 16 + 44 + 100; // inside the first frame's payload
      b.writeUInt8(b.readUInt8(at) ^ 0xff, at);
      writeFileSync(file, b);
    });
    const e = await runRestore({ pages: t.pages(), source: t.source, to: t.to, delta: 'never' }).catch(
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(CorruptBlockError);
    expect((e as CorruptBlockError).message).toMatch(new RegExp(`segment ${segment}`));
    expect((e as CorruptBlockError).context).toMatchObject({ device: DEVICE, rp: 2, segment });
    // a block whose frame is the damaged one (a frame may hold several blocks through dedup)
    const holders = (await t.reader.resolve(2, DEVICE)).extents
      .filter((x) => x.kind === 'data' && x.segment === segment && x.frame === 0)
      .map((x) => x.first);
    expect(holders).toContain((e as CorruptBlockError).context.block);
  });

  it('a segment gone since the plan was made is not found, naming it', async () => {
    const t = await served((r) => (r.path.endsWith('.seg') ? { kind: 'status', status: 404 } : undefined));
    await expect(runRestore({ pages: t.pages(), source: t.source, to: t.to })).rejects.toBeInstanceOf(
      NotFoundError,
    );
  });
});
