/**
 * Writes a new file sequentially through a few page-aligned staging buffers: each full buffer is
 * written at its offset in the background (direct I/O where the filesystem allows, see
 * direct-io.ts) while the next one fills, so the caller's writes cost one copy and never wait for
 * the disk unless every buffer is in flight. `finish` writes the tail and fsyncs. The FsObjectStore
 * writes segments with it.
 */
import type { FileHandle } from 'node:fs/promises';
import { alignedBuffer, DirectFile } from './direct-io.ts';

const STAGE_BYTES = 1024 * 1024;
const STAGES = 2;
/** Staging buffers no writer is using, shared by the process's writers (they are fresh memory). */
const idle: Buffer[] = [];

export class StagedFileWriter {
  private readonly fh: FileHandle;
  private readonly file: DirectFile;
  private stage: Buffer | undefined;
  private staged = 0;
  /** File offset of the current stage's first byte. */
  private position = 0;
  private readonly inFlight: Promise<void>[] = [];
  private failed: unknown;

  /** `fh`: the new file; `direct`: the same file opened for direct I/O, if allowed. */
  constructor(fh: FileHandle, direct: FileHandle | undefined) {
    this.fh = fh;
    this.file = new DirectFile(fh.fd, direct?.fd);
  }

  async write(chunks: readonly Uint8Array[]): Promise<void> {
    for (const chunk of chunks) {
      for (let at = 0; at < chunk.length; ) {
        this.stage ??= idle.pop() ?? alignedBuffer(STAGE_BYTES);
        const n = Math.min(chunk.length - at, STAGE_BYTES - this.staged);
        this.stage.set(chunk.subarray(at, at + n), this.staged);
        this.staged += n;
        at += n;
        if (this.staged === STAGE_BYTES) await this.send();
      }
    }
  }

  /**
   * Writes the current stage in the background. Every write is tracked until it settles (and
   * never rejects: its error is kept in `failed`), so `finish` and `abort` always wait for all of
   * them and the file is never closed under a write still in progress.
   */
  private ship(): void {
    const stage = this.stage!;
    const p = this.file.write(stage, 0, this.staged, this.position).then(
      () => {
        idle.push(stage);
      },
      (e: unknown) => {
        this.failed ??= e;
      },
    );
    this.inFlight.push(p);
    this.position += this.staged;
    this.stage = undefined;
    this.staged = 0;
  }

  /** Ships the full stage; waits while every stage is in flight. */
  private async send(): Promise<void> {
    this.ship();
    if (this.inFlight.length >= STAGES) await this.inFlight.shift();
    if (this.failed) throw this.failed;
  }

  /** Waits until every write started has settled. */
  private async settle(): Promise<void> {
    while (this.inFlight.length > 0) await this.inFlight.shift();
  }

  /** Writes what is staged, waits for every write and fsyncs; returns the file's size. */
  async finish(): Promise<number> {
    if (this.staged > 0) this.ship();
    await this.settle();
    if (this.failed) throw this.failed;
    await this.fh.sync();
    return this.position;
  }

  /** Waits for the writes in flight (their errors ignored) and gives the buffers back. */
  async abort(): Promise<void> {
    await this.settle();
    if (this.stage) idle.push(this.stage);
    this.stage = undefined;
  }
}
