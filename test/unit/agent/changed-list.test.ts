/**
 * Changed-block input: extent lists and LVM thin_delta output parse (bad input named by line), and
 * an incremental with a list reads only the listed chunks yet commits the same RP a full scan would,
 * carrying the parent's change tracking forward for the rest.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SafeReader } from '#core/safe-reader.ts';
import { chunksTouched, parseExtentList, parseThinDelta } from '../../../agent/backup/changed-list.ts';
import { type Harness, harness } from '../../support/backup-harness.ts';

const MiB = 2 ** 20;

describe('changed-list formats', () => {
  it('reads extent lists: decimal, hex, comments; names a bad line', () => {
    expect(parseExtentList('# tracker v1\n0 4096\n0x100000 0x2000  # two blocks\n\n5 0\n', 'l')).toEqual([
      [0, 4096],
      [MiB, 8192],
    ]);
    expect(() => parseExtentList('0 4096\n12 x\n', 'list.txt')).toThrow(
      /changed list list.txt: line 2: expected '<offset> <length>', got '12 x'/,
    );
  });

  it('reads LVM thin_delta XML in data blocks of data_block_size sectors', () => {
    const xml = `<superblock uuid="" time="1" transaction="2" data_block_size="128" nr_data_blocks="100">
  <diff left="1" right="2">
    <same begin="0" length="4"/>
    <different begin="4" length="2"/>
    <right_only begin="10" length="1"/>
  </diff>
</superblock>`;
    expect(parseThinDelta(xml, 'td')).toEqual([
      [4 * 65536, 2 * 65536],
      [10 * 65536, 65536],
    ]);
    expect(() => parseThinDelta('<diff/>', 'td')).toThrow(/without <superblock data_block_size/);
  });

  it('maps extents to the chunks they touch', () => {
    expect(
      chunksTouched(
        [
          [MiB - 1, 2],
          [5 * MiB, 10],
          [100 * MiB, 1],
        ],
        MiB,
        8 * MiB,
      ),
    ).toEqual([0, 1, 5]);
  });
});

describe('backup with a changed list', () => {
  let root: string;
  let h: Harness;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'cl-'));
    h = harness(root);
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('reads only the listed chunks, commits the right image, and keeps change tracking whole', async () => {
    const dev = join(root, 'd.img');
    const img = randomBytes(8 * MiB);
    writeFileSync(dev, img);
    const spec = { path: dev, id: 'd' };
    await h.backup({ devices: [spec], blockSize: 4096 });
    randomBytes(3 * 4096).copy(img, 2 * MiB + 4096);
    randomBytes(100).copy(img, 7 * MiB + 10);
    writeFileSync(dev, img);
    const changed = [
      [2 * MiB + 4096, 3 * 4096],
      [7 * MiB + 10, 100],
    ] as const;
    const r2 = await h.backup({ devices: [{ ...spec, changed }] });
    expect(r2.manifest.stats.scannedBytes).toBe(2 * MiB); // two 1 MiB chunks, not 8 MiB
    expect(r2.manifest.devices[0]!.changedBlocks).toBe(4);
    const reader = new SafeReader(h.store, h.safe);
    expect((await reader.readImage(2, 'd')).equals(img)).toBe(true);
    // a full scan afterwards finds nothing new: the skipped chunks kept the parent's state
    const r3 = await h.backup({ devices: [spec] });
    expect(r3.manifest.devices[0]!.changedBlocks).toBe(0);
    expect(readFileSync(dev).equals(img)).toBe(true);
  });

  it('trusts the list: a write it misses waits for the next full scan', async () => {
    const dev = join(root, 'd.img');
    const img = randomBytes(4 * MiB);
    writeFileSync(dev, img);
    await h.backup({ devices: [{ path: dev, id: 'd' }], blockSize: 4096 });
    randomBytes(4096).copy(img, 3 * MiB);
    writeFileSync(dev, img);
    const r2 = await h.backup({ devices: [{ path: dev, id: 'd', changed: [[0, 4096]] }] });
    expect(r2.manifest.devices[0]!.changedBlocks).toBe(0);
    const r3 = await h.backup({ devices: [{ path: dev, id: 'd' }] });
    expect(r3.manifest.devices[0]!.changedBlocks).toBe(1);
    expect((await new SafeReader(h.store, h.safe).readImage(3, 'd')).equals(img)).toBe(true);
  });

  it('reads a changed-list file after the pre-snapshot command (which may write it)', async () => {
    const dev = join(root, 'd.img');
    const img = randomBytes(4 * MiB);
    writeFileSync(dev, img);
    const list = join(root, 'changed.txt');
    const hooks: string[] = [];
    const hooked = harness(root, 'test-safe', h.store);
    await hooked.backup({ devices: [{ path: dev, id: 'd' }], blockSize: 4096 });
    randomBytes(4096).copy(img, 3 * MiB);
    writeFileSync(dev, img);
    // the file does not exist yet: the pre-snapshot hook of a real setup would write it
    const { runBackup } = await import('../../../agent/backup/run-backup.ts');
    const r = await runBackup(
      {
        store: h.store,
        safe: h.safe,
        stateDir: hooked.stateDir,
        agent: { id: 'agent-1', version: 'test', host: 'test' },
        runHook: async (cmd) => {
          hooks.push(cmd);
          writeFileSync(list, `${3 * MiB} 4096\n`);
        },
      },
      { devices: [{ path: dev, id: 'd', changedFile: list }], preSnapshot: 'make-list', workers: 1 },
    );
    expect(hooks).toEqual(['make-list']);
    expect(r.manifest.stats.scannedBytes).toBe(MiB);
    expect(r.manifest.devices[0]!.changedBlocks).toBe(1);
  });
});
