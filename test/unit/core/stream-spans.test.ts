import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ByteCursor } from '#core/bytes.ts';
import { type PlanRange, streamSpans } from '#core/restore-plan.ts';

const range = (segment: string, offset: number, length: number): PlanRange => ({
  segment,
  offset,
  length,
  runs: [],
});

describe('streamSpans', () => {
  it('puts every range in one span: one segment, increasing and apart, small gaps, bounded length', () => {
    // ranges of a segment may overlap or repeat (a block deduplicated against an earlier frame)
    const ranges = fc.array(
      fc
        .record({
          segment: fc.constantFrom('a', 'b', 'c'),
          offset: fc.integer({ min: 0, max: 20_000 }),
          length: fc.integer({ min: 1, max: 900 }),
        })
        .map((x) => range(x.segment, x.offset, x.length)),
      { maxLength: 60 },
    );
    fc.assert(
      fc.property(
        ranges,
        fc.integer({ min: 0, max: 3000 }),
        fc.integer({ min: 1000, max: 9000 }),
        (rs, gap, max) => {
          const spans = streamSpans(rs, gap, max);
          expect(spans.flat().length).toBe(rs.length);
          expect(new Set(spans.flat())).toEqual(new Set(rs));
          for (const span of spans) {
            expect(span.length).toBeGreaterThan(0);
            for (let i = 1; i < span.length; i++) {
              const [p, r] = [span[i - 1]!, span[i]!];
              expect(r.segment).toBe(p.segment);
              expect(r.offset - (p.offset + p.length)).toBeGreaterThanOrEqual(0);
              expect(r.offset - (p.offset + p.length)).toBeLessThanOrEqual(gap);
            }
            const end = span[span.length - 1]!;
            if (span.length > 1) expect(end.offset + end.length - span[0]!.offset).toBeLessThanOrEqual(max);
          }
        },
      ),
    );
  });

  it('joins back-to-back ranges of a segment and keeps other segments apart', () => {
    const rs = [range('a', 0, 10), range('b', 0, 5), range('a', 10, 10), range('a', 30, 5)];
    expect(streamSpans(rs, 0).map((s) => s.map((r) => `${r.segment}${r.offset}`))).toEqual([
      ['a0', 'a10'],
      ['a30'],
      ['b0'],
    ]);
  });
});

describe('ByteCursor', () => {
  it('takes any chunking apart into the pieces asked for', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 1, maxLength: 3000 }),
        fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 1, maxLength: 20 }),
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 300 })), { maxLength: 20 }),
        async (bytes, cuts, steps) => {
          async function* chunks() {
            let at = 0;
            for (let i = 0; at < bytes.length; i++) {
              const n = cuts[i % cuts.length]!;
              yield bytes.subarray(at, at + n);
              at += n;
            }
          }
          const c = new ByteCursor(chunks(), 'test stream');
          let at = 0;
          for (const [fill, n] of steps) {
            if (at + n > bytes.length) {
              await expect(fill ? c.fill(new Uint8Array(n)) : c.skip(n)).rejects.toThrow(
                /test stream: the stream ended after \d+ bytes/,
              );
              return;
            }
            if (fill) {
              const into = new Uint8Array(n);
              await c.fill(into);
              expect(Buffer.from(into).equals(Buffer.from(bytes.subarray(at, at + n)))).toBe(true);
            } else await c.skip(n);
            at += n;
            expect(c.position).toBe(at);
          }
        },
      ),
    );
  });
});
