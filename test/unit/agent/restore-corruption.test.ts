/** Corruption is named (device, block, RP, segment or key), never written silently. */
import { existsSync, readFileSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SafeReader } from '#core/safe-reader.ts';
import { localPages } from '../../../agent/restore/plans.ts';
import { runRestore } from '../../../agent/restore/run-restore.ts';
import { verifyPages } from '../../../agent/restore/run-verify.ts';
import { countingStore, StoreSource } from '../../../agent/restore/segment-source.ts';
import { copySafe, DEVICE, makeRpFixture, type RpFixture } from '../../support/rp-fixture.ts';

let fx: RpFixture;
const dirs: string[] = [];
beforeAll(async () => {
  fx = await makeRpFixture('fx');
  dirs.push(fx.root);
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** The block map of RP 1, relative to the safe's directory. */
function mapPath(dir: string): string {
  const m = JSON.parse(readFileSync(join(dir, 'rp', '0000000001.json'), 'utf8'));
  return m.devices[0].blockMap.key.slice('safes/fx/'.length);
}

function damaged(change: (dir: string, seg: string) => void) {
  const { dir, store } = copySafe(fx);
  dirs.push(dir);
  const seg = JSON.parse(readFileSync(join(dir, 'rp', '0000000001.json'), 'utf8')).segments[0].key.slice(
    'safes/fx/'.length,
  );
  change(dir, seg);
  const counter = { bytes: 0 };
  const reader = new SafeReader(countingStore(store, counter), 'fx');
  const to = join(dir, 'out.img');
  const restore = (allowDamaged = false) =>
    runRestore({
      pages: localPages(reader, 1, DEVICE),
      source: new StoreSource(reader, counter),
      to,
      allowDamaged,
      delta: 'never',
    });
  return {
    to,
    restore,
    verify: () =>
      verifyPages(localPages(reader, 1, DEVICE), new StoreSource(reader, counter), () => undefined),
    seg,
  };
}

describe('restore and verify of a damaged safe', () => {
  it('a flipped byte in a segment: the block, device, RP and segment are named', async () => {
    const t = damaged((dir, seg) => {
      const b = readFileSync(join(dir, seg));
      b[16 + 44 + 3]! ^= 0xff; // payload of the first frame
      writeFileSync(join(dir, seg), b);
    });
    const id = t.seg.split('/').pop()!.replace('.seg', '');
    await expect(t.restore()).rejects.toThrow(
      new RegExp(`block \\d+ of device ${DEVICE} at RP 1 \\(segment ${id}\\): `),
    );
    expect(existsSync(t.to)).toBe(false); // a failed restore never looks complete
    const r = await t.restore(true);
    expect(r.damaged).toEqual([expect.objectContaining({ segment: id, count: expect.any(Number) })]);
    expect((await t.verify()).damaged[0]).toMatchObject({ segment: id });
  });

  it('a missing segment: named', async () => {
    const t = damaged((dir, seg) => unlinkSync(join(dir, seg)));
    const id = t.seg.split('/').pop()!.replace('.seg', '');
    await expect(t.restore()).rejects.toThrow(new RegExp(`segment ${id} is missing`));
    await expect(t.verify()).rejects.toThrow(/is missing/);
  });

  it('a truncated block map: named', async () => {
    const t = damaged((dir) => truncateSync(join(dir, mapPath(dir)), 20));
    await expect(t.restore()).rejects.toThrow(
      /block map safes\/fx\/map\/0000000001\/[0-9a-f]{16}\/d\.map does not match its manifest \(truncated or altered\)/,
    );
  });
});
