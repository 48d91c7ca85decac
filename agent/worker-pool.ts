/**
 * A fixed pool of worker threads answering requests by id; each request goes to the worker with
 * the fewest in flight. The backup's scan workers and the restore's decode workers use it.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

interface Slot {
  readonly worker: Worker;
  inFlight: number;
}

export class WorkerPool<Req extends { readonly id: number }, Res extends { readonly id: number }> {
  private readonly slots: Slot[];
  private readonly pending = new Map<number, { resolve(r: Res): void; reject(e: Error): void }>();
  private failed: Error | undefined;
  private readonly name: string;

  /**
   * `entry`: the worker's module next to the calling module, without extension (`.ts` from the
   * sources, `.mjs` in the built agent); `from`: the caller's import.meta.url.
   */
  constructor(entry: string, from: string, workerData: unknown, size = Math.max(1, availableParallelism())) {
    this.name = entry;
    const url = new URL(`${entry}${from.endsWith('.ts') ? '.ts' : '.mjs'}`, from);
    this.slots = Array.from({ length: size }, () => {
      const worker = new Worker(url, { workerData });
      const slot: Slot = { worker, inFlight: 0 };
      worker.on('message', (r: Res) => {
        slot.inFlight--;
        const p = this.pending.get(r.id);
        this.pending.delete(r.id);
        p?.resolve(r);
      });
      worker.on('error', (e) => this.fail(e));
      worker.on('exit', (code) => {
        if (code !== 0) this.fail(new Error(`${this.name} worker exited with code ${code}`));
      });
      return slot;
    });
  }

  get size(): number {
    return this.slots.length;
  }

  private fail(e: Error): void {
    this.failed ??= e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  /** Sends `req` to a worker, moving the `transfer` buffers to it. */
  submit(req: Req, transfer: ArrayBuffer[]): Promise<Res> {
    return this.send(
      this.slots.reduce((a, b) => (b.inFlight < a.inFlight ? b : a)),
      req,
      transfer,
    );
  }

  /** Sends one request to every worker (`make` gives each its own, with a distinct id). */
  each(make: () => Req): Promise<Res[]> {
    return Promise.all(this.slots.map((s) => this.send(s, make(), [])));
  }

  private send(slot: Slot, req: Req, transfer: ArrayBuffer[]): Promise<Res> {
    if (this.failed) return Promise.reject(this.failed);
    slot.inFlight++;
    return new Promise((resolve, reject) => {
      this.pending.set(req.id, { resolve, reject });
      slot.worker.postMessage(req, transfer);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
