/**
 * Bounded parallelism. On the first failure no new item starts, and the call rejects only after
 * every item already started has settled: nothing keeps running behind a caller that saw an error.
 */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (t: T) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  let firstError: unknown;
  const run = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!);
      } catch (e) {
        if (!failed) firstError = e;
        failed = true;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, run));
  if (failed) throw firstError;
  return out;
}

export async function forEachLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (t: T) => Promise<void>,
): Promise<void> {
  await mapLimit(items, limit, fn);
}

/**
 * At most `limit` tasks at once, fed in any number of batches with no barrier between them (the
 * next batch's tasks start as the last batch's finish). After the first failure no task starts;
 * `drain` waits for every started task, then throws that failure.
 */
export class TaskLimiter {
  private readonly limit: number;
  private readonly running = new Set<Promise<void>>();
  private failure: { readonly error: unknown } | undefined;

  constructor(limit: number) {
    this.limit = Math.max(1, limit);
  }

  get failed(): boolean {
    return this.failure !== undefined;
  }

  /** Starts `task` once a place is free (resolves when it has started, or been skipped after a failure). */
  async run(task: () => Promise<void>): Promise<void> {
    while (this.running.size >= this.limit) await Promise.race(this.running);
    if (this.failure) return;
    const p: Promise<void> = task()
      .catch((error: unknown) => {
        this.failure ??= { error };
      })
      .finally(() => this.running.delete(p));
    this.running.add(p);
  }

  async drain(): Promise<void> {
    while (this.running.size > 0) await Promise.all(this.running);
    if (this.failure) throw this.failure.error;
  }
}
