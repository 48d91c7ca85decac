/**
 * An ObjectStore that crashes after a given number of write operations (every writer chunk,
 * finish, put, putIfAbsent and delete counts), like an agent killed at that point: the operation does not
 * happen and the error propagates. Models kopia's blobtesting/faulty.go.
 */
import type { ObjectInfo, ObjectStore, ObjectTail, ObjectWriter } from '#core/ports/object-store.ts';

export class InjectedCrash extends Error {
  constructor(at: number) {
    super(`injected crash at write operation ${at}`);
  }
}

export class FaultyStore implements ObjectStore {
  readonly location: string;
  private readonly inner: ObjectStore;
  private remaining: number;
  ops = 0;

  constructor(inner: ObjectStore, crashAfter: number) {
    this.inner = inner;
    this.location = inner.location;
    this.remaining = crashAfter;
  }

  private tick(): void {
    this.ops++;
    if (this.remaining-- <= 0) throw new InjectedCrash(this.ops);
  }

  get(key: string): Promise<Buffer> {
    return this.inner.get(key);
  }
  getRange(key: string, offset: number, length: number, into?: Uint8Array): Promise<Buffer> {
    return this.inner.getRange(key, offset, length, into);
  }
  getTail(key: string, length: number): Promise<ObjectTail> {
    return this.inner.getTail(key, length);
  }
  head(key: string): Promise<ObjectInfo | undefined> {
    return this.inner.head(key);
  }
  list(prefix: string): Promise<ObjectInfo[]> {
    return this.inner.list(prefix);
  }
  async put(key: string, body: Uint8Array): Promise<void> {
    this.tick();
    return this.inner.put(key, body);
  }
  async putIfAbsent(key: string, body: Uint8Array): Promise<boolean> {
    this.tick();
    return this.inner.putIfAbsent(key, body);
  }
  async delete(key: string): Promise<void> {
    this.tick();
    return this.inner.delete(key);
  }
  restamp(key: string, body: Uint8Array, version: string): Promise<string | undefined> {
    return this.inner.restamp(key, body, version);
  }
  cleanTemporaries(before: Date): Promise<number> {
    return this.inner.cleanTemporaries(before);
  }
  openWriter(key: string): ObjectWriter {
    const w = this.inner.openWriter(key);
    return {
      write: async (c) => {
        this.tick();
        return w.write(c);
      },
      finish: async () => {
        this.tick();
        return w.finish();
      },
      abort: () => w.abort(),
    };
  }
}
