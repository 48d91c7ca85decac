import { describe, expect, it } from 'vitest';
import { MAX_PARTS, MIN_PART_BYTES, partGeometry, partSpan } from '#core/export-geometry.ts';

const MiB = 2 ** 20;

describe('export part geometry', () => {
  it('uses whole blocks, at least 5 MiB, and a short last part', () => {
    const size = 12 * MiB + 4321;
    const g = partGeometry(size, 64 * 1024, 5 * MiB);
    expect(g).toEqual({ partBytes: 5 * MiB, parts: 3, blocksPerPart: 80 });
    expect(partSpan(g, 3, size)).toEqual({ firstBlock: 160, blocks: 80, bytes: 2 * MiB + 4321 });
    expect(partGeometry(size, 64 * 1024, 1).partBytes).toBe(MIN_PART_BYTES);
  });

  it('never needs more than 10,000 parts (a 1 TiB device gets larger parts)', () => {
    const size = 2 ** 40;
    const g = partGeometry(size, 512 * 1024);
    expect(g.parts).toBeLessThanOrEqual(MAX_PARTS);
    expect(g.partBytes % (512 * 1024)).toBe(0);
    expect(g.parts * g.partBytes).toBeGreaterThanOrEqual(size);
  });
});
