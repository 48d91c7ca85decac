/** Properties of the extent algebra compaction relies on (pure, per block checked against a model). */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { apply, dataOnly, diff, type MoveRun, remap } from '#core/compaction/extent-diff.ts';
import { type Extent, pushBlock } from '#core/format/block-map.ts';

const N = 64;
type Cell = { segment: string; frame: number } | null;
/** A device state as one cell per block (null = zero), built from random runs. */
const stateArb = fc.array(
  fc.option(fc.record({ segment: fc.constantFrom('a', 'b'), frame: fc.integer({ min: 0, max: 40 }) }), {
    nil: null,
  }),
  { minLength: N, maxLength: N },
);

function toExtents(cells: readonly Cell[]): Extent[] {
  const out: Extent[] = [];
  cells.forEach((c, i) => {
    if (c) pushBlock(out, i, c);
  });
  return out;
}
function toCells(extents: readonly Extent[]): Cell[] {
  const cells: Cell[] = Array(N).fill(null);
  for (const e of extents)
    for (let k = 0; k < e.count; k++)
      cells[e.first + k] = e.kind === 'data' ? { segment: e.segment, frame: e.frame + k } : null;
  return cells;
}

describe('extent algebra', () => {
  it('diff(from, to) laid over from gives to, and names only blocks that differ', () => {
    fc.assert(
      fc.property(stateArb, stateArb, (a, b) => {
        const from = dataOnly(toExtents(a));
        const to = dataOnly(toExtents(b));
        const d = diff(from, to);
        expect(toCells(apply(from, d))).toEqual(toCells(to));
        const changed = a.filter((c, i) => JSON.stringify(c) !== JSON.stringify(b[i])).length;
        expect(d.reduce((n, e) => n + e.count, 0)).toBe(changed);
      }),
    );
  });

  it('remap moves every frame of a rewritten segment to its run, and nothing else', () => {
    fc.assert(
      fc.property(stateArb, fc.integer({ min: 1, max: 7 }), (a, cut) => {
        const extents = toExtents(a);
        // segment a's frames 0..40 move to two outputs, split at `cut`
        const runs: MoveRun[] = [
          { first: 0, count: cut, segment: 'x', newFirst: 100 },
          { first: cut, count: 41 - cut, segment: 'y', newFirst: 0 },
        ];
        const cells = toCells(remap(extents, new Map([['a', runs]])));
        a.forEach((c, i) => {
          if (c?.segment !== 'a') expect(cells[i]).toEqual(c);
          else if (c.frame < cut) expect(cells[i]).toEqual({ segment: 'x', frame: 100 + c.frame });
          else expect(cells[i]).toEqual({ segment: 'y', frame: c.frame - cut });
        });
      }),
    );
  });
});
