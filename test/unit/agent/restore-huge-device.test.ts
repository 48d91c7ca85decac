/**
 * A device larger than the target's filesystem allows (found by the bad-input fuzzer with a forged
 * device size; also a real 20 TiB disk restored onto ext4): the restore names the target and the
 * size (exit 2) instead of failing with a bare EFBIG, and leaves no partial file behind.
 */
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CdpError } from '#core/errors.ts';
import { restoreCommand } from '../../../agent/commands/restore.ts';
import { exitCodeFor } from '../../../agent/exit-codes.ts';
import { copySafe, makeRpFixture, type RpFixture } from '../../support/rp-fixture.ts';

let fx: RpFixture;
const dirs: string[] = [];
beforeAll(async () => {
  fx = await makeRpFixture('fx');
  dirs.push(fx.root);
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** RP 1's device made `size` bytes, in its block map and its manifest alike (checksums kept right). */
function resized(dir: string, size: bigint): void {
  const manifestPath = join(dir, 'rp', '0000000001.json');
  const m = JSON.parse(readFileSync(manifestPath, 'utf8'));
  const mapPath = join(dir, m.devices[0].blockMap.key.slice('safes/fx/'.length));
  const map = readFileSync(mapPath);
  map.writeBigUInt64LE(size, 16);
  writeFileSync(mapPath, map);
  m.devices[0].sizeBytes = Number(size);
  m.devices[0].blockMap.sha256 = createHash('sha256').update(map).digest('hex');
  writeFileSync(manifestPath, JSON.stringify(m));
}

describe('restore of a device larger than the target filesystem allows', () => {
  it('is refused naming the target and the size, or done as a sparse file where the filesystem allows it', async () => {
    // the safe's folder is named like the safe, as `--safe` wants it
    const copy = copySafe(fx).dir;
    dirs.push(copy);
    const dir = join(mkdtempSync(join(tmpdir(), 'huge-safe-')), 'fx');
    dirs.push(dirname(dir));
    cpSync(copy, dir, { recursive: true });
    const size = 2n ** 52n; // 4 PiB: past ext4's and xfs's largest file
    resized(dir, size);
    const out = mkdtempSync(join(tmpdir(), 'huge-'));
    dirs.push(out);
    const to = join(out, 'd.img');
    const log = console.log;
    console.log = () => undefined;
    let result: unknown;
    try {
      result = await restoreCommand({ safe: dir, device: 'd', rp: '1', to, json: true });
    } catch (e) {
      result = e;
    } finally {
      console.log = log;
    }
    if (result instanceof Error) {
      expect(result).toBeInstanceOf(CdpError);
      expect(exitCodeFor((result as CdpError).code)).toBe(2);
      expect(result.message).toMatch(new RegExp(`cdp-partial cannot be made ${size} bytes.*(EFBIG|EINVAL)`));
      expect(existsSync(`${to}.cdp-partial`)).toBe(false);
    } else {
      // a filesystem without that limit (tmpfs): a sparse file of the device's size
      expect(result).toBe(0);
      expect(BigInt(statSync(to).size)).toBe(size);
    }
  });
});
