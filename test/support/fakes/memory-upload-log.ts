import type { ArrivedObject, QuarantinedObject, UploadLog } from '#core/ports/upload-log.ts';

/** In-memory UploadLog for unit tests; `failNext` makes the next write throw (fault injection). */
export class MemoryUploadLog implements UploadLog {
  readonly objects = new Map<string, ArrivedObject>();
  readonly quarantined = new Map<string, QuarantinedObject>();
  failNext: Error | undefined;

  private maybeFail(): void {
    const e = this.failNext;
    this.failNext = undefined;
    if (e) throw e;
  }

  async recordObject(o: ArrivedObject): Promise<void> {
    this.maybeFail();
    this.objects.set(`${o.safe}\n${o.key}`, o);
  }

  async quarantine(q: QuarantinedObject): Promise<void> {
    this.maybeFail();
    this.quarantined.set(q.key, q);
  }

  async listObjects(safe: string): Promise<ArrivedObject[]> {
    return [...this.objects.values()]
      .filter((o) => o.safe === safe)
      .sort((a, b) => a.key.localeCompare(b.key));
  }

  async listQuarantined(): Promise<QuarantinedObject[]> {
    return [...this.quarantined.values()].sort((a, b) => a.key.localeCompare(b.key));
  }
}
