import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FsObjectStore, StorageFullError } from '#adapters/fs-store.ts';
import type { ObjectStore, ObjectWriter } from '#core/ports/object-store.ts';
import { type DurableSegment, SegmentPacker } from '../../../agent/backup/segment-packer.ts';

const dir = mkdtempSync(join(tmpdir(), 'packer-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/**
 * A store whose first streamed object fails to finish (a full disk) only after the second one
 * finished: the failure comes while the packer is already filling the segments after it.
 */
function failingFirstFinish(inner: ObjectStore) {
  const secondDone = deferred();
  const firstFailed = deferred();
  let opened = 0;
  const store: ObjectStore = Object.create(inner);
  store.openWriter = (key: string): ObjectWriter => {
    const w = inner.openWriter(key);
    const n = ++opened;
    return {
      write: (c) => w.write(c),
      abort: async () => {
        await w.abort();
        if (n === 1) firstFailed.resolve(); // the packer releases a failed segment before it reports
      },
      finish: async () => {
        if (n === 1) {
          await secondDone.promise;
          throw new StorageFullError(
            inner.location,
            key,
            Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' }),
          );
        }
        const info = await w.finish();
        if (n === 2) secondDone.resolve();
        return info;
      },
    };
  };
  return { store, firstFailed: firstFailed.promise };
}

describe('SegmentPacker', () => {
  it('fails close (and every later add) when an earlier segment failed to finish while later ones filled', async () => {
    const inner = new FsObjectStore(join(dir, 'safe'), 'safe');
    const { store, firstFailed } = failingFirstFinish(inner);
    const durable: DurableSegment[] = [];
    const packer = new SegmentPacker(store, 'safe', {
      targetBytes: 64 * 1024,
      encrypted: false,
      onDurable: (s) => {
        durable.push(s);
      },
    });
    const frame = Buffer.alloc(40 * 1024, 3);
    const identity = Buffer.alloc(32, 1);
    // two frames fill a segment: segments 1 and 2 are finishing, then a third one opens
    for (let i = 0; i < 4; i++) await packer.add(frame, identity, frame.length);
    await firstFailed;
    await new Promise((r) => setImmediate(r)); // let the packer see its finish settle
    await expect(packer.add(frame, identity, frame.length)).rejects.toBeInstanceOf(StorageFullError);
    await expect(packer.close()).rejects.toBeInstanceOf(StorageFullError);
    expect(durable.map((s) => s.frames)).toEqual([2]); // segment 2 only: segment 1 never became durable
  });

  it('closes with every segment durable when nothing fails', async () => {
    const store = new FsObjectStore(join(dir, 'ok'), 'ok');
    const durable: DurableSegment[] = [];
    const packer = new SegmentPacker(store, 'ok', {
      targetBytes: 64 * 1024,
      encrypted: false,
      onDurable: (s) => {
        durable.push(s);
      },
    });
    const frame = Buffer.alloc(40 * 1024, 5);
    for (let i = 0; i < 5; i++) await packer.add(frame, Buffer.alloc(32, i), frame.length);
    await packer.close();
    expect(durable.map((s) => s.frames).sort()).toEqual([1, 2, 2]);
    for (const s of durable) expect((await store.head(s.key))?.size).toBe(s.bytes);
  });
});
