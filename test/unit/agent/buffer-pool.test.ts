import { describe, expect, it } from 'vitest';
import { BufferPool } from '../../../agent/restore/buffer-pool.ts';

describe('BufferPool', () => {
  it('never has more than max buffers out, reuses given ones, and replaces lost ones', async () => {
    const pool = new BufferPool(2, 64);
    const a = await pool.take(10);
    const b = await pool.take(100);
    expect([a.byteLength, b.byteLength]).toEqual([64, 100]);
    let third: ArrayBuffer | undefined;
    const waiting = pool.take(10).then((x) => {
      third = x;
    });
    await new Promise((r) => setTimeout(r, 5));
    expect(third).toBeUndefined(); // both buffers are out
    pool.give(a);
    await waiting;
    expect(third).toBe(a);
    pool.lost(); // b went to a worker that failed
    const fresh = await pool.take(10);
    expect(fresh).not.toBe(b);
    expect(fresh.byteLength).toBe(64);
  });
});
