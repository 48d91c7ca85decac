/** A progress bar on a TTY (stderr), nothing otherwise or with --json. */
import { SingleBar } from 'cli-progress';

export interface Progress {
  update(label: string, done: number, total: number): void;
  stop(): void;
}

export function progressBar(enabled: boolean): Progress {
  if (!enabled || !process.stderr.isTTY) return { update: () => undefined, stop: () => undefined };
  const bar = new SingleBar({
    stream: process.stderr,
    format: ' {label} [{bar}] {percentage}% | {doneMiB}/{totalMiB} MiB | {speed} MB/s | ETA {eta}s',
    hideCursor: true,
  });
  const t0 = performance.now();
  let started = false;
  let current = '';
  return {
    update(label, done, total) {
      const payload = {
        label,
        doneMiB: (done / 2 ** 20).toFixed(0),
        totalMiB: (total / 2 ** 20).toFixed(0),
        speed: (done / 1e6 / Math.max(0.001, (performance.now() - t0) / 1000)).toFixed(0),
      };
      if (!started || label !== current) {
        if (started) bar.stop();
        bar.start(total, done, payload);
        started = true;
        current = label;
      } else bar.update(done, payload);
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
