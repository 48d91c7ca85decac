/**
 * Read buffers for a restore, reused: at most `max` exist at once, so a restore holds a bounded
 * amount of memory however large the device. A buffer goes to a decode worker with its bytes and
 * comes back with the answer (`give`); `take` waits while every buffer is out.
 */
export class BufferPool {
  private readonly max: number;
  private readonly size: number;
  private readonly free: ArrayBuffer[] = [];
  private readonly waiting: (() => void)[] = [];
  private out = 0;

  /** `size` is the usual buffer size; a longer read gets a buffer of its own length. */
  constructor(max: number, size: number) {
    this.max = max;
    this.size = size;
  }

  async take(length: number): Promise<ArrayBuffer> {
    while (this.out >= this.max) await new Promise<void>((r) => this.waiting.push(r));
    this.out++;
    const b = this.free.pop();
    return b !== undefined && b.byteLength >= length ? b : new ArrayBuffer(Math.max(length, this.size));
  }

  /** Returns a buffer taken earlier. */
  give(buf: ArrayBuffer): void {
    this.free.push(buf);
    this.release();
  }

  /** A buffer taken earlier is gone (moved to a worker that failed): another may be made. */
  lost(): void {
    this.release();
  }

  private release(): void {
    this.out--;
    this.waiting.shift()?.();
  }
}
