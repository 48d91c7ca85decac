import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeBlockMap, type Extent, encodeBlockMap, overlay, pushBlock } from '#core/format/block-map.ts';

const SEGS = ['a'.repeat(64), 'b'.repeat(64)];
type Cell = 'zero' | { segment: string; frame: number } | undefined;

/** A random sparse delta over `n` blocks as a per-block model and its extent list. */
const delta = (n: number) =>
  fc
    .array(
      fc.option(
        fc.oneof(
          fc.constant('zero' as const),
          fc.record({ s: fc.integer({ min: 0, max: 1 }), f: fc.nat(50) }),
        ),
        { nil: undefined },
      ),
      {
        minLength: n,
        maxLength: n,
      },
    )
    .map((cells) => {
      const model: Cell[] = cells.map((c) =>
        c === undefined || c === 'zero' ? c : { segment: SEGS[c.s]!, frame: c.f },
      );
      const extents: Extent[] = [];
      model.forEach((c, block) => {
        if (c !== undefined) pushBlock(extents, block, c);
      });
      return { model, extents };
    });

function expand(extents: readonly Extent[], n: number): Cell[] {
  const out: Cell[] = new Array(n).fill(undefined);
  for (const e of extents) {
    for (let i = 0; i < e.count; i++)
      out[e.first + i] = e.kind === 'zero' ? 'zero' : { segment: e.segment, frame: e.frame + i };
  }
  return out;
}

describe('block map', () => {
  it('overlay equals laying the per-block deltas over each other', () => {
    fc.assert(
      fc.property(fc.array(delta(40), { minLength: 1, maxLength: 6 }), (deltas) => {
        let extents: Extent[] = [];
        const model: Cell[] = new Array(40).fill(undefined);
        for (const d of deltas) {
          extents = overlay(extents, d.extents);
          d.model.forEach((c, i) => {
            if (c !== undefined) model[i] = c;
          });
        }
        expect(expand(extents, 40)).toEqual(model);
        for (let i = 1; i < extents.length; i++)
          expect(extents[i]!.first).toBeGreaterThanOrEqual(extents[i - 1]!.first + extents[i - 1]!.count);
      }),
    );
  });

  it('merges adjacent blocks into runs', () => {
    const ext: Extent[] = [];
    for (let b = 0; b < 10; b++) pushBlock(ext, b, { segment: SEGS[0]!, frame: b + 5 });
    pushBlock(ext, 10, 'zero');
    pushBlock(ext, 11, 'zero');
    expect(ext).toEqual([
      { kind: 'data', first: 0, count: 10, segment: SEGS[0], frame: 5 },
      { kind: 'zero', first: 10, count: 2 },
    ]);
  });

  it('round-trips through its binary form', () => {
    fc.assert(
      fc.property(delta(64), ({ extents }) => {
        const m = { blockSize: 4096, deviceSize: 64 * 4096 - 100, extents };
        expect(decodeBlockMap(encodeBlockMap(m))).toEqual(m);
      }),
    );
  });

  it('rejects a truncated or altered map with a reason', () => {
    const buf = encodeBlockMap({
      blockSize: 4096,
      deviceSize: 4096 * 8,
      extents: [{ kind: 'zero', first: 0, count: 8 }],
    });
    expect(() => decodeBlockMap(buf.subarray(0, buf.length - 3))).toThrow(/does not decode|header says/);
    const bad = Buffer.from(buf);
    bad.writeUInt16LE(9, 8);
    expect(() => decodeBlockMap(bad)).toThrow(/version 9/);
    expect(() => decodeBlockMap(Buffer.from('nope'))).toThrow(/bad magic/);
  });
});
