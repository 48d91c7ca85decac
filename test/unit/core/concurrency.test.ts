import { describe, expect, it } from 'vitest';
import { mapLimit, TaskLimiter } from '#core/concurrency.ts';

describe('mapLimit', () => {
  it('keeps order and the limit', async () => {
    let running = 0;
    let peak = 0;
    const out = await mapLimit([1, 2, 3, 4, 5, 6], 2, async (x) => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, 5));
      running--;
      return x * 10;
    });
    expect(out).toEqual([10, 20, 30, 40, 50, 60]);
    expect(peak).toBe(2);
  });

  it('after a failure starts nothing new and rejects only once the started items have settled', async () => {
    const started: number[] = [];
    const finished: number[] = [];
    await expect(
      mapLimit([1, 2, 3, 4, 5], 2, async (x) => {
        started.push(x);
        if (x === 1) throw new Error('boom');
        await new Promise((r) => setTimeout(r, 20));
        finished.push(x);
      }),
    ).rejects.toThrow('boom');
    expect(started).toEqual([1, 2]);
    expect(finished).toEqual([2]);
  });
});

describe('TaskLimiter', () => {
  it('keeps at most limit tasks running across batches, with no barrier between them', async () => {
    const limiter = new TaskLimiter(3);
    let running = 0;
    let most = 0;
    const started: number[] = [];
    const task = (i: number, ms: number) => async () => {
      started.push(i);
      running++;
      most = Math.max(most, running);
      await new Promise((r) => setTimeout(r, ms));
      running--;
    };
    // batch 1: one slow task and two quick ones; batch 2 starts while the slow one still runs
    for (const [i, ms] of [
      [0, 60],
      [1, 5],
      [2, 5],
    ] as const)
      await limiter.run(task(i, ms));
    for (let i = 3; i < 8; i++) await limiter.run(task(i, 5));
    expect(started).toContain(7);
    expect(running).toBeGreaterThan(0); // the slow task of batch 1 is still going
    await limiter.drain();
    expect(running).toBe(0);
    expect(most).toBe(3);
  });

  it('starts nothing after a failure, and drain throws it once every started task settled', async () => {
    const limiter = new TaskLimiter(2);
    let settled = 0;
    let startedAfter = 0;
    await limiter.run(async () => {
      await new Promise((r) => setTimeout(r, 30));
      settled++;
    });
    await limiter.run(async () => {
      throw new Error('boom');
    });
    await new Promise((r) => setTimeout(r, 1));
    expect(limiter.failed).toBe(true);
    await limiter.run(async () => {
      startedAfter++;
    });
    await expect(limiter.drain()).rejects.toThrow('boom');
    expect(settled).toBe(1);
    expect(startedAfter).toBe(0);
  });
});
