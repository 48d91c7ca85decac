/** Bad input gets a clear error naming what was wrong, and nothing written that could corrupt the safe. */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { safeConfigKey } from '#core/keys.ts';
import { SafeReader } from '#core/safe-reader.ts';
import { type Harness, harness } from '../../support/backup-harness.ts';
import { readImage, sha256 } from '../../support/read-image.ts';

const BS = 4096;
let root: string;
let h: Harness;
let dev: { path: string; id: string };

beforeEach(async () => {
  root = mkdtempSync(join(tmpdir(), 'bad-'));
  h = harness(root);
  dev = { path: join(root, 'd.img'), id: 'd' };
  writeFileSync(dev.path, randomBytes(16 * BS));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

async function rps(): Promise<number[]> {
  return new SafeReader(h.store, h.safe).listRps();
}

describe('backup refuses bad input', () => {
  it('names a device that does not exist', async () => {
    await expect(h.backup({ devices: [{ path: join(root, 'nope.img'), id: 'x' }] })).rejects.toThrow(
      /device .*nope\.img: cannot be read \(ENOENT\)/,
    );
    expect(await rps()).toEqual([]);
  });

  it('names a device whose size changed since the last RP, committing nothing', async () => {
    await h.backup({ devices: [dev], blockSize: BS });
    truncateSync(dev.path, 8 * BS);
    await expect(h.backup({ devices: [dev] })).rejects.toThrow(
      /size changed from 65536 to 32768 bytes since RP 1/,
    );
    expect(await rps()).toEqual([1]);
  });

  it('refuses a safe owned by another agent unless told to take over', async () => {
    await h.backup({ devices: [dev], blockSize: BS });
    const other = harness(root, 'test-safe', h.store, 'agent-2');
    await expect(other.backup({ devices: [dev] })).rejects.toThrow(
      /belongs to agent agent-1, this agent is agent-2/,
    );
    expect(await rps()).toEqual([1]);
    const r = await other.backup({ devices: [dev], takeOver: true });
    expect(r.rp).toBe(2);
  });

  it('refuses a wrong key, a missing key and a key for an unencrypted safe', async () => {
    const key = randomBytes(32);
    await h.backup({ devices: [dev], blockSize: BS, key });
    await expect(h.backup({ devices: [dev], key: randomBytes(32) })).rejects.toThrow(/wrong encryption key/);
    await expect(h.backup({ devices: [dev] })).rejects.toThrow(/is encrypted/);
    const plainRoot = mkdtempSync(join(tmpdir(), 'bad-'));
    const p = harness(plainRoot);
    await p.backup({ devices: [dev], blockSize: BS });
    await expect(p.backup({ devices: [dev], key })).rejects.toThrow(/is not encrypted/);
    rmSync(plainRoot, { recursive: true, force: true });
    expect(await rps()).toEqual([1]);
  });

  it('refuses a safe of an unknown format version without touching it', async () => {
    await h.backup({ devices: [dev], blockSize: BS });
    const cfgPath = join(root, 'safe', 'safe.json');
    const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, version: 99 }));
    await expect(h.backup({ devices: [dev] })).rejects.toThrow(/safe format version 99 is not supported/);
    expect(await rps()).toEqual([1]);
    expect((await h.store.get(safeConfigKey(h.safe))).toString()).toContain('"version":99');
  });

  it('rejects a block size that is not a power of two from 4 KiB to 512 KiB', async () => {
    await expect(h.backup({ devices: [dev], blockSize: 3000 })).rejects.toThrow(/block size 3000/);
    await expect(h.backup({ devices: [dev], blockSize: 1024 * 1024 })).rejects.toThrow(/block size 1048576/);
  });
});

describe('consistency groups', () => {
  it('reads a device that joined the group in a later RP', async () => {
    await h.backup({ devices: [dev], blockSize: BS });
    const second = { path: join(root, 'e.img'), id: 'e' };
    const img = randomBytes(5 * BS);
    writeFileSync(second.path, img);
    const r = await h.backup({ devices: [dev, second], blockSize: BS });
    expect(r.rp).toBe(2);
    const reader = new SafeReader(h.store, h.safe);
    expect(sha256(await readImage(reader, 2, 'e'))).toBe(sha256(img));
    await expect(readImage(reader, 1, 'e')).rejects.toThrow(/device e in RP 1 not found/);
  });
});

describe('change-tracking state', () => {
  it('is rebuilt from the safe when lost, without storing unchanged data again', async () => {
    await h.backup({ devices: [dev], blockSize: BS });
    for (const f of ['d.cts', 'dedup.bin', 'uncommitted.json']) unlinkSync(join(h.stateDir, f));
    const r = await h.backup({ devices: [dev] });
    expect(r.rebuiltState).toEqual(['dedup index', 'change tracking of d']);
    expect(r.manifest.stats.storedBytes).toBe(0);
    expect(r.manifest.devices[0]!.changedBlocks).toBe(0);
  });

  it('stores only the changed blocks of an incremental', async () => {
    await h.backup({ devices: [dev], blockSize: BS });
    const img = readFileSync(dev.path);
    randomBytes(10).copy(img, 5 * BS + 7);
    writeFileSync(dev.path, img);
    const r = await h.backup({ devices: [dev] });
    expect(r.manifest.devices[0]).toMatchObject({ changedBlocks: 1, dedupBlocks: 0, zeroBlocks: 0 });
  });
});
