/**
 * Killing a backup at any write operation leaves no visible partial RP, and the next run resumes
 * without uploading again what was already durable.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FsObjectStore } from '#adapters/fs-store.ts';
import { safePrefix } from '#core/keys.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import { SafeReader } from '#core/safe-reader.ts';
import { harness } from '../../support/backup-harness.ts';
import { FaultyStore, InjectedCrash } from '../../support/fakes/faulty-store.ts';
import { readImage, sha256 } from '../../support/read-image.ts';

const BS = 4096;

function image(): Buffer {
  const b = Buffer.alloc(96 * BS);
  randomBytes(64 * BS).copy(b, 0);
  b.fill('text text text ', 70 * BS, 90 * BS);
  return b;
}

async function segmentBytes(store: ObjectStore, safe: string): Promise<number> {
  return (await store.list(`${safePrefix(safe)}seg/`)).reduce((a, o) => a + o.size, 0);
}

describe('interrupted backup', () => {
  it('never shows a partial RP and resumes without re-uploading durable segments', async () => {
    // baseline: the same image backed up without a crash
    const base = mkdtempSync(join(tmpdir(), 'int-'));
    const img = image();
    writeFileSync(join(base, 'd.img'), img);
    const counting = new FaultyStore(
      new FsObjectStore(join(base, 'safe'), 'test-safe'),
      Number.POSITIVE_INFINITY,
    );
    const hb = harness(base, 'test-safe', counting);
    await hb.backup({ devices: [{ path: join(base, 'd.img'), id: 'd' }], blockSize: BS });
    const baseline = await segmentBytes(hb.store, hb.safe);
    const totalOps = counting.ops;
    expect(totalOps).toBeGreaterThan(10); // frames are written in batches: about two operations per segment, plus maps and manifest

    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: totalOps }), async (crashAt) => {
        const root = mkdtempSync(join(tmpdir(), 'int-'));
        try {
          const dev = { path: join(root, 'd.img'), id: 'd' };
          writeFileSync(dev.path, img);
          const inner = new FsObjectStore(join(root, 'safe'), 'test-safe');
          const faulty = new FaultyStore(inner, crashAt);
          const crashed = await harness(root, 'test-safe', faulty)
            .backup({ devices: [dev], blockSize: BS })
            .then(() => false)
            .catch((e) => {
              if (!(e instanceof InjectedCrash)) throw e;
              return true;
            });
          const reader = new SafeReader(inner, 'test-safe');
          const visible = await reader.listRps();
          if (crashed) expect(visible).toEqual([]);
          const durableBefore = await segmentBytes(inner, 'test-safe');

          const resumed = await harness(root, 'test-safe', inner).backup({ devices: [dev], blockSize: BS });
          expect(resumed.rp).toBe(crashed ? 1 : 2);
          const after = await segmentBytes(inner, 'test-safe');
          // nothing durable was uploaded again: the safe holds about one copy of the data
          expect(after).toBeLessThanOrEqual(baseline + 2 * 4096);
          expect(after - durableBefore).toBeLessThanOrEqual(Math.max(0, baseline - durableBefore) + 2 * 4096);
          expect(sha256(await readImage(new SafeReader(inner, 'test-safe'), resumed.rp, 'd'))).toBe(
            sha256(img),
          );
        } finally {
          rmSync(root, { recursive: true, force: true });
        }
      }),
      { numRuns: 30 },
    );
    rmSync(base, { recursive: true, force: true });
  }, 120_000);
});
