/** Format v1 golden fixture (test/fixtures/make-v1.ts): every future version must read it exactly. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FsObjectStore } from '#adapters/fs-store.ts';
import { deriveKeys } from '#core/format/crypto.ts';
import { SafeReader } from '#core/safe-reader.ts';
import { readImage, sha256 } from '../../support/read-image.ts';

const root = new URL('../../fixtures/v1/', import.meta.url).pathname;
const golden = JSON.parse(readFileSync(`${root}expected.json`, 'utf8')) as {
  key: string;
  expected: Record<string, Record<string, string[]>>;
};

describe('format v1 golden fixture', () => {
  for (const safe of ['plain', 'encrypted']) {
    it(`reads every RP of the ${safe} safe exactly`, async () => {
      const store = new FsObjectStore(`${root}${safe}`, safe);
      const plain = new SafeReader(store, safe);
      const cfg = (await plain.config())!;
      const keys = cfg.encryption
        ? deriveKeys(Buffer.from(golden.key, 'hex'), Buffer.from(cfg.encryption.salt, 'base64'))
        : undefined;
      expect(Boolean(keys)).toBe(safe === 'encrypted');
      const reader = new SafeReader(store, safe, keys);
      expect(await reader.listRps()).toEqual([1, 2]);
      for (const [device, hashes] of Object.entries(golden.expected[safe]!)) {
        for (let rp = 1; rp <= hashes.length; rp++) {
          expect(sha256(await readImage(reader, rp, device)), `${safe} RP ${rp} ${device}`).toBe(
            hashes[rp - 1],
          );
        }
      }
    });
  }

  it('cannot read the encrypted safe without its key', async () => {
    const reader = new SafeReader(new FsObjectStore(`${root}encrypted`, 'encrypted'), 'encrypted');
    await expect(readImage(reader, 1, 'sda')).rejects.toThrow(/encrypted and no key/);
  });
});
