/** Corruption is named (device, block, RP, segment or key), never written silently. */
import { existsSync, readFileSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { streamSpans } from '#core/restore-plan.ts';
import { SafeReader } from '#core/safe-reader.ts';
import { localPages } from '../../../agent/restore/plans.ts';
import { PARTIAL_SUFFIX, runRestore } from '../../../agent/restore/run-restore.ts';
import { verifyPages } from '../../../agent/restore/run-verify.ts';
import { countingStore, type SegmentSource, StoreSource } from '../../../agent/restore/segment-source.ts';
import { copySafe, DEVICE, makeRpFixture, type RpFixture } from '../../support/rp-fixture.ts';

let fx: RpFixture;
const dirs: string[] = [];
beforeAll(async () => {
  fx = await makeRpFixture('fx');
  dirs.push(fx.root);
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function damaged(change: (dir: string, seg: string) => void) {
  const { dir, store } = copySafe(fx);
  dirs.push(dir);
  const seg = JSON.parse(readFileSync(join(dir, 'rp', '0000000001.json'), 'utf8')).segments[0].key.slice(
    'safes/fx/'.length,
  );
  change(dir, seg);
  const counter = { bytes: 0 };
  const reader = new SafeReader(countingStore(store, counter), 'fx');
  const to = join(dir, 'out.img');
  const restore = (allowDamaged = false) =>
    runRestore({
      pages: localPages(reader, 1, DEVICE),
      source: new StoreSource(reader, counter),
      to,
      allowDamaged,
      delta: 'never',
    });
  return {
    to,
    restore,
    verify: () =>
      verifyPages(localPages(reader, 1, DEVICE), new StoreSource(reader, counter), () => undefined),
    seg,
  };
}

describe('restore and verify of a damaged safe', () => {
  it('a flipped byte in a segment: the block, device, RP and segment are named', async () => {
    const t = damaged((dir, seg) => {
      const b = readFileSync(join(dir, seg));
      b[16 + 44 + 3]! ^= 0xff; // payload of the first frame
      writeFileSync(join(dir, seg), b);
    });
    const id = t.seg.split('/').pop()!.replace('.seg', '');
    await expect(t.restore()).rejects.toThrow(
      new RegExp(`block \\d+ of device ${DEVICE} at RP 1 \\(segment ${id}\\): `),
    );
    expect(existsSync(t.to)).toBe(false); // a failed restore never looks complete
    const r = await t.restore(true);
    expect(r.damaged).toEqual([expect.objectContaining({ segment: id, count: expect.any(Number) })]);
    expect((await t.verify()).damaged[0]).toMatchObject({ segment: id });
  });

  it('a missing segment: named', async () => {
    const t = damaged((dir, seg) => unlinkSync(join(dir, seg)));
    const id = t.seg.split('/').pop()!.replace('.seg', '');
    await expect(t.restore()).rejects.toThrow(new RegExp(`segment ${id} is missing`));
    await expect(t.verify()).rejects.toThrow(/is missing/);
  });

  it('a truncated block map: named', async () => {
    const t = damaged((dir) => truncateSync(join(dir, 'map', '0000000001', `${DEVICE}.map`), 20));
    await expect(t.restore()).rejects.toThrow(
      /block map safes\/fx\/map\/0000000001\/d\.map does not match its manifest \(truncated or altered\)/,
    );
  });
});

/**
 * A safe's source whose streams go through `stream` (and not its local segment files, so the
 * restore reads as it would from S3).
 */
function streamingSource(
  inner: StoreSource,
  stream: (s: string, o: number, l: number) => Promise<AsyncIterable<Uint8Array>>,
): SegmentSource {
  return {
    get fetchedBytes() {
      return inner.fetchedBytes;
    },
    range: (s, o, l, into) => inner.range(s, o, l, into),
    stream,
    entries: (s) => inner.entries(s),
  };
}

/** A stream of the first half of the range, then `error`. */
async function brokenHalfway(inner: StoreSource, s: string, o: number, l: number, error: string) {
  const chunks = await inner.stream(s, o, Math.floor(l / 2));
  return (async function* () {
    yield* chunks;
    throw new Error(error);
  })();
}

describe('an interrupted restore', () => {
  it('leaves only a partial file, and running it again resumes it as a delta', async () => {
    const { dir, store } = copySafe(fx);
    dirs.push(dir);
    const counter = { bytes: 0 };
    const reader = new SafeReader(countingStore(store, counter), 'fx');
    const to = join(dir, 'vol.img');
    let calls = 0;
    const flaky = new StoreSource(reader, counter);
    // the first stream works; every later one breaks halfway, until the restore gives up
    const failing = streamingSource(flaky, async (s, o, l) =>
      ++calls === 1 ? flaky.stream(s, o, l) : brokenHalfway(flaky, s, o, l, 'network lost'),
    );
    const pages = () => localPages(reader, 2, DEVICE, { maxRangeBytes: 16 * 1024 });
    await expect(runRestore({ pages: pages(), source: failing, to, parallel: 1 })).rejects.toThrow(
      /network lost/,
    );
    expect(calls).toBeGreaterThanOrEqual(4); // a broken stream is opened again before the restore gives up
    expect(existsSync(to)).toBe(false);
    expect(existsSync(`${to}${PARTIAL_SUFFIX}`)).toBe(true);
    const r = await runRestore({ pages: pages(), source: new StoreSource(reader, counter), to });
    expect(r.delta).toBe(true);
    expect(r.unchangedBlocks).toBeGreaterThan(0);
    expect(readFileSync(to).equals(fx.images[1])).toBe(true);
    expect(existsSync(`${to}${PARTIAL_SUFFIX}`)).toBe(false);
  });

  it('a stream that breaks is reopened where it stopped, and the restore is exact', async () => {
    const { dir, store } = copySafe(fx);
    dirs.push(dir);
    const counter = { bytes: 0 };
    const reader = new SafeReader(countingStore(store, counter), 'fx');
    const to = join(dir, 'vol.img');
    const inner = new StoreSource(reader, counter);
    const opened = new Map<string, number[]>();
    const broken = new Set<string>();
    // each segment's first stream breaks halfway; the reopened one works
    const source = streamingSource(inner, async (s, o, l) => {
      opened.set(s, [...(opened.get(s) ?? []), o]);
      if (broken.has(s)) return inner.stream(s, o, l);
      broken.add(s);
      return brokenHalfway(inner, s, o, l, 'connection reset');
    });
    const pages = localPages(reader, 2, DEVICE, { maxRangeBytes: 16 * 1024 });
    const r = await runRestore({ pages, source, to, parallel: 2, delta: 'never' });
    expect(r.delta).toBe(false);
    expect(readFileSync(to).equals(fx.images[1])).toBe(true);
    expect(broken.size).toBeGreaterThan(0);
    // one streamed read per span of the plan, and one reopening per broken stream: no more
    let spans = 0;
    for await (const page of localPages(reader, 2, DEVICE, { maxRangeBytes: 16 * 1024 }))
      spans += streamSpans(page.ranges).length;
    expect([...opened.values()].flat().length).toBe(spans + broken.size);
    for (const offsets of opened.values()) {
      // the broken stream, then its reopening from where it stopped (never before where it began)
      expect(offsets.length).toBeGreaterThanOrEqual(2);
      expect(Math.min(...offsets.slice(1))).toBeGreaterThanOrEqual(offsets[0]!);
    }
  });
});
