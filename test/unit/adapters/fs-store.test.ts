import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { FsObjectStore } from '#adapters/fs-store.ts';
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
