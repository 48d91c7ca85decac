/**
 * Smooth bandwidth limit: a token bucket refilled continuously at `bytesPerSecond`, holding at
 * most a tenth of a second's worth, so traffic never bursts to line rate.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export class RateLimiter {
  private readonly rate: number;
  /** The most bytes that may go out at once. */
  readonly capacity: number;
  private tokens: number;
  private last = performance.now();
  private chain: Promise<void> = Promise.resolve();

  constructor(bytesPerSecond: number) {
    this.rate = bytesPerSecond;
    this.capacity = Math.max(16 * 1024, bytesPerSecond / 10);
    this.tokens = this.capacity;
  }

  /** Resolves when `bytes` may be sent. Calls are served in order. */
  take(bytes: number): Promise<void> {
    const run = this.chain.then(() => this.takeNow(bytes));
    this.chain = run;
    return run;
  }

  private async takeNow(bytes: number): Promise<void> {
    let need = bytes;
    while (need > 0) {
      const now = performance.now();
      this.tokens = Math.min(this.capacity, this.tokens + ((now - this.last) / 1000) * this.rate);
      this.last = now;
      const grant = Math.min(need, this.tokens);
      this.tokens -= grant;
      need -= grant;
      if (need > 0) await sleep(Math.max(1, (Math.min(need, this.capacity) / this.rate) * 1000));
    }
  }
}

/** Parses `10M`, `512k`, `1.5G`, `1000` (bytes per second; k/M/G are powers of 1024). */
export function parseRate(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:i?B)?(?:\/s)?$/.exec(s.trim());
  if (!m) throw new Error(`bad rate '${s}' (examples: 512k, 10M, 1G)`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  const v = Math.floor(Number(m[1]) * mult);
  if (v <= 0) throw new Error(`rate must be positive: '${s}'`);
  return v;
}
