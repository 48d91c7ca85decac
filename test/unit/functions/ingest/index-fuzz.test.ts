/**
 * Property: whatever is done to a recovery point's manifest, block map, segment header or footer
 * (or a segment's length), the
 * index use case never crashes and never commits an RP that does not read back exactly: it either
 * quarantines the upload with a reason or commits an RP whose image is the original.
 */
import { readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SafeReader } from '#core/safe-reader.ts';
import {
  handleArrival,
  type IndexOutcome,
  ParentPendingError,
} from '../../../../functions/ingest/index-manifest.ts';
import { type Json, paths, setAt } from '../../../fuzz/support/json-mutation.ts';
import { MemoryCatalog } from '../../../support/fakes/memory-catalog.ts';
import {
  copySafe,
  DEVICE,
  keysOf,
  makeRpFixture,
  objectCreated,
  type RpFixture,
} from '../../../support/rp-fixture.ts';

let fx: RpFixture;
const k = keysOf(() => fx);
beforeAll(async () => {
  fx = await makeRpFixture('fx');
});
afterAll(() => rmSync(fx.root, { recursive: true, force: true }));

const anyValue: fc.Arbitrary<Json | undefined> = fc.oneof(
  fc.constant(undefined),
  fc.constant(null),
  fc.boolean(),
  fc.integer({ min: -2, max: 2 ** 40 }),
  fc.constantFrom(0, 1, 2, 3, 4096, 65536),
  fc.string({ maxLength: 12 }),
  fc.constantFrom('fx', 'other', '../x', 'safes/fx/map/0000000001/d.map', 'a'.repeat(64)),
);

type Mutation =
  | { kind: 'manifest'; pick: number; value: Json | undefined }
  | { kind: 'map'; at: number; xor: number }
  | { kind: 'map-truncate'; keep: number }
  | { kind: 'segment-tail'; seg: number; back: number; xor: number }
  | { kind: 'segment-head'; seg: number; at: number; xor: number }
  | { kind: 'segment-truncate'; seg: number; cut: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('manifest' as const), pick: fc.nat(), value: anyValue }),
  fc.record({ kind: fc.constant('map' as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('map-truncate' as const), keep: fc.nat() }),
  fc.record({
    kind: fc.constant('segment-tail' as const),
    seg: fc.nat(),
    back: fc.integer({ min: 1, max: 400 }),
    xor: fc.integer({ min: 1, max: 255 }),
  }),
  fc.record({
    kind: fc.constant('segment-head' as const),
    seg: fc.nat(),
    at: fc.integer({ min: 0, max: 15 }),
    xor: fc.integer({ min: 1, max: 255 }),
  }),
  fc.record({
    kind: fc.constant('segment-truncate' as const),
    seg: fc.nat(),
    cut: fc.integer({ min: 1, max: 5000 }),
  }),
);

function apply(dir: string, rp: number, m: Mutation): void {
  const path = (key: string): string => join(dir, key.slice('safes/fx/'.length));
  const manifest = JSON.parse(readFileSync(path(k.manifest(rp)), 'utf8')) as Json & {
    segments: { key: string }[];
  };
  const segs = manifest.segments.map((s) => path(s.key));
  const flip = (p: string, at: number, xor: number): void => {
    const b = readFileSync(p);
    b[at % b.length]! ^= xor;
    writeFileSync(p, b);
  };
  switch (m.kind) {
    case 'manifest': {
      const all = paths(manifest);
      writeFileSync(
        path(k.manifest(rp)),
        JSON.stringify(setAt(manifest, all[m.pick % all.length]!, m.value)),
      );
      break;
    }
    case 'map':
      flip(path(k.map(rp)), m.at, m.xor);
      break;
    case 'map-truncate':
      truncateSync(path(k.map(rp)), m.keep % statSync(path(k.map(rp))).size);
      break;
    case 'segment-tail': {
      // Only the footer (index + trailer): frame bytes are checked by restore and verify, which
      // read block data; the index function must not (docs/FORMAT.md "Validation").
      const p = segs[m.seg % segs.length]!;
      const b = readFileSync(p);
      const footer = b.readUInt32LE(b.length - 32 + 8) + 32;
      flip(p, b.length - 1 - ((m.back - 1) % footer), m.xor);
      break;
    }
    case 'segment-head':
      flip(segs[m.seg % segs.length]!, m.at, m.xor);
      break;
    case 'segment-truncate': {
      const p = segs[m.seg % segs.length]!;
      truncateSync(p, Math.max(0, statSync(p).size - m.cut));
      break;
    }
  }
}

describe('index use case under mutated uploads', () => {
  it('quarantines or commits only RPs that read back exactly; never crashes', async () => {
    const seen = { quarantined: 0, committed: 0, waiting: 0 };
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(1, 2), mutation, async (rp, m) => {
        const { dir, store } = copySafe(fx);
        try {
          const catalog = new MemoryCatalog();
          const deps = { catalog, bucket: 'b', storeFor: () => store, now: () => new Date() };
          const arrive = (key: string) => handleArrival(deps, objectCreated('b', key, 1));
          if (rp === 2) expect(await arrive(k.manifest(1))).toMatchObject({ outcome: 'committed' });
          apply(dir, rp, m);
          let outcome: IndexOutcome;
          try {
            outcome = await arrive(k.manifest(rp));
          } catch (e) {
            // Only a parent that is not committed may defer the RP (a mutated parent number).
            expect(e).toBeInstanceOf(ParentPendingError);
            seen.waiting++;
            return;
          }
          if (outcome.outcome === 'quarantined') {
            expect(outcome.reason.length).toBeGreaterThan(5);
            seen.quarantined++;
            return;
          }
          expect(outcome).toMatchObject({ outcome: 'committed', rp });
          const image = await new SafeReader(store, 'fx').readImage(rp, DEVICE);
          expect(image.equals(fx.images[rp - 1]!)).toBe(true);
          seen.committed++;
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }),
      { numRuns: 300 },
    );
    // Both sides of the property were exercised (benign edits such as stats fields commit).
    expect(seen.quarantined).toBeGreaterThan(100);
    expect(seen.committed).toBeGreaterThan(0);
  }, 120_000);
});
