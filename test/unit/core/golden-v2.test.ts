/**
 * Format v2 golden fixture (test/fixtures/make-v2.ts): self-identifying segments, block maps under
 * their run's name, manifests with a view, a compaction generation with its garbage. Every future
 * version must read it exactly.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FsObjectStore } from '#adapters/fs-store.ts';
import { deriveKeys } from '#core/format/crypto.ts';
import { parseKey, segmentKey } from '#core/keys.ts';
import { SafeReader } from '#core/safe-reader.ts';
import { readImage, sha256 } from '../../support/read-image.ts';

const root = new URL('../../fixtures/v2/', import.meta.url).pathname;
const golden = JSON.parse(readFileSync(`${root}expected.json`, 'utf8')) as {
  key: string;
  expired: number[];
  expected: Record<string, Record<string, (string | null)[]>>;
};

describe('format v2 golden fixture', () => {
  for (const safe of ['plain', 'encrypted']) {
    it(`reads every retained RP of the ${safe} safe exactly, and no expired one`, async () => {
      const store = new FsObjectStore(`${root}${safe}`, safe);
      const cfg = (await new SafeReader(store, safe).config())!;
      expect(cfg.version).toBe(2);
      const keys = cfg.encryption
        ? deriveKeys(Buffer.from(golden.key, 'hex'), Buffer.from(cfg.encryption.salt, 'base64'))
        : undefined;
      const reader = new SafeReader(store, safe, keys);
      expect(await reader.listRps()).toEqual([2, 3]);
      const gen = (await reader.generation())!;
      expect(gen).toMatchObject({ version: 2, generation: 1, upTo: 3 });
      expect(gen.garbage.every((g) => g.generation === 1)).toBe(true);
      const m = await reader.manifest(3);
      expect(m).toMatchObject({ version: 2, view: 0 });
      for (const d of m.devices)
        expect(parseKey(d.blockMap.key)).toMatchObject({ kind: 'block-map', run: m.run });
      for (const [device, hashes] of Object.entries(golden.expected[safe]!)) {
        for (let rp = 1; rp <= hashes.length; rp++) {
          if (golden.expired.includes(rp)) {
            await expect(readImage(reader, rp, device)).rejects.toThrow(/expired by retention/);
            continue;
          }
          expect(sha256(await readImage(reader, rp, device)), `${safe} RP ${rp} ${device}`).toBe(
            hashes[rp - 1],
          );
        }
      }
    });
  }

  it('every segment proves which segment of which safe it is', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'golden-v2-'));
    try {
      for (const safe of ['plain', 'encrypted']) {
        const store = new FsObjectStore(`${root}${safe}`, safe);
        const reader = new SafeReader(store, safe);
        const ids = (await store.list(`safes/${safe}/seg/`)).flatMap((o) => {
          const k = parseKey(o.key);
          return k.kind === 'segment' ? [k.segment] : [];
        });
        expect(ids.length).toBeGreaterThan(1);
        for (const id of ids) await expect(reader.segmentEntries(id)).resolves.toBeDefined();
        // the same bytes under another segment's name, or in another safe, are refused by name
        const copy = new FsObjectStore(join(tmp, `copy-${safe}`), `copy-${safe}`);
        const bytes = await store.get(segmentKey(safe, ids[0]!));
        await copy.put(segmentKey(`copy-${safe}`, ids[0]!), bytes);
        await copy.put(segmentKey(`copy-${safe}`, ids[1]!), bytes);
        const r = new SafeReader(copy, `copy-${safe}`);
        await expect(r.segmentEntries(ids[0]!)).rejects.toThrow(/belongs to another safe/);
        await expect(r.segmentEntries(ids[1]!)).rejects.toThrow(new RegExp(`holds segment ${ids[0]}`));
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
