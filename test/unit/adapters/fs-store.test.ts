import { mkdtempSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { FsObjectStore } from '#adapters/fs-store.ts';
import { blockMapKey } from '#core/keys.ts';
import { objectStoreContract, SAFE } from '../../contract/object-store.contract.ts';

objectStoreContract(
  'directory',
  async () => new FsObjectStore(mkdtempSync(join(tmpdir(), 'fs-store-')), SAFE),
);

it('refuses keys that would escape the safe directory', async () => {
  const s = new FsObjectStore(mkdtempSync(join(tmpdir(), 'fs-store-')), SAFE);
  await expect(s.get(`safes/${SAFE}/../other/safe.json`)).rejects.toThrow(/bad key/);
  await expect(s.get('safes/other/safe.json')).rejects.toThrow(/not in safe/);
});

it('takes only its own temporary names for temporary files: a device id with ".tmp-" is an object like any other', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fs-store-'));
  const s = new FsObjectStore(dir, SAFE);
  const key = blockMapKey(SAFE, 1, 'build.tmp-1.img', '0123456789abcdef');
  await s.put(key, Buffer.from('a map'));
  const old = new Date(Date.now() - 48 * 3600_000);
  utimesSync(join(dir, 'map', '0000000001', '0123456789abcdef', 'build.tmp-1.img.map'), old, old);
  // a temporary file of a writer long gone, in both formats
  writeFileSync(join(dir, 'safe.json.tmp-0a1b2c3d4e5f'), 'x');
  utimesSync(join(dir, 'safe.json.tmp-0a1b2c3d4e5f'), old, old);
  expect((await s.list(`safes/${SAFE}/map/`)).map((o) => o.key)).toEqual([key]);
  expect(await s.cleanTemporaries(new Date(Date.now() - 24 * 3600_000))).toBe(1);
  expect((await s.get(key)).toString()).toBe('a map');
});
