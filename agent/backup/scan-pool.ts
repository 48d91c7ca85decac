/** A fixed pool of scan workers; each request goes to the worker with the fewest in flight. */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { ScanRequest, ScanResult, ScanSettings } from './scan-worker.ts';

interface Slot {
  readonly worker: Worker;
  inFlight: number;
}

export class ScanPool {
  private readonly slots: Slot[];
  private readonly pending = new Map<number, { resolve(r: ScanResult): void; reject(e: Error): void }>();
  private failed: Error | undefined;

  constructor(settings: ScanSettings, size = Math.max(1, availableParallelism())) {
    this.slots = Array.from({ length: size }, () => {
      const worker = new Worker(
        new URL(import.meta.url.endsWith('.ts') ? './scan-worker.ts' : './scan-worker.mjs', import.meta.url),
        { workerData: settings },
      );
      const slot: Slot = { worker, inFlight: 0 };
      worker.on('message', (r: ScanResult) => {
        slot.inFlight--;
        const p = this.pending.get(r.id);
        this.pending.delete(r.id);
        p?.resolve(r);
      });
      worker.on('error', (e) => this.fail(e));
      worker.on('exit', (code) => {
        if (code !== 0) this.fail(new Error(`scan worker exited with code ${code}`));
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

  submit(req: ScanRequest): Promise<ScanResult> {
    if (this.failed) return Promise.reject(this.failed);
    const slot = this.slots.reduce((a, b) => (b.inFlight < a.inFlight ? b : a));
    slot.inFlight++;
    return new Promise((resolve, reject) => {
      this.pending.set(req.id, { resolve, reject });
      const transfer = req.old ? [req.buf, req.old] : [req.buf];
      slot.worker.postMessage(req, transfer);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
