import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BadKeyError } from '#core/errors.ts';
import {
  blockMapKey,
  compactionWorkKey,
  damageKey,
  generationKey,
  generationMapKey,
  generationMapPartKey,
  journalKey,
  legacyBlockMapKey,
  lockKey,
  manifestKey,
  parseKey,
  policyKey,
  safeConfigKey,
  segmentKey,
} from '#core/keys.ts';

const safeId = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,62}$/);
const deviceId = fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,62}$/);
const segmentId = fc.stringMatching(/^[0-9a-f]{64}$/);
const rp = fc.integer({ min: 1, max: 9_999_999_999 });
const runId = fc.stringMatching(/^[0-9a-f]{16}$/);
const lockId = fc.stringMatching(/^[0-9a-f]{32}$/);

describe('keys', () => {
  it('round-trips every kind of key', () => {
    fc.assert(
      fc.property(safeId, deviceId, segmentId, rp, runId, lockId, (safe, device, segment, n, run, lock) => {
        expect(parseKey(safeConfigKey(safe))).toEqual({ kind: 'safe-config', safe });
        expect(parseKey(manifestKey(safe, n))).toEqual({ kind: 'manifest', safe, rp: n });
        expect(parseKey(blockMapKey(safe, n, device, run))).toEqual({
          kind: 'block-map',
          safe,
          rp: n,
          device,
          run,
        });
        expect(parseKey(legacyBlockMapKey(safe, n, device))).toEqual({
          kind: 'block-map',
          safe,
          rp: n,
          device,
        });
        expect(parseKey(segmentKey(safe, segment))).toEqual({ kind: 'segment', safe, segment });
        expect(parseKey(policyKey(safe))).toEqual({ kind: 'policy', safe });
        expect(parseKey(lockKey(safe, lock))).toEqual({ kind: 'lock', safe, id: lock });
        expect(parseKey(damageKey(safe, segment, run))).toEqual({ kind: 'damage', safe, segment, run });
        expect(parseKey(generationKey(safe, n))).toEqual({ kind: 'generation', safe, generation: n });
        expect(parseKey(journalKey(safe, n, run))).toEqual({
          kind: 'journal',
          safe,
          generation: n,
          attempt: run,
        });
        expect(parseKey(generationMapPartKey(safe, n, run, 2, device, 4096))).toEqual({
          kind: 'generation-map',
          safe,
          generation: n,
          attempt: run,
          rp: 2,
          device,
          first: 4096,
        });
        expect(parseKey(compactionWorkKey(safe, n, run, 'live-3'))).toEqual({
          kind: 'compaction-work',
          safe,
          generation: n,
          attempt: run,
          name: 'live-000003',
        });
        expect(parseKey(compactionWorkKey(safe, n, run, 'rewrite'))).toMatchObject({
          kind: 'compaction-work',
          name: 'rewrite',
        });
        expect(parseKey(generationMapKey(safe, n, run, 1, device))).toEqual({
          kind: 'generation-map',
          safe,
          generation: n,
          attempt: run,
          rp: 1,
          device,
        });
      }),
    );
  });

  it('still parses the v1 layout of generation work and the v1 lease', () => {
    const g = 'safes/s/gen/0000000003/';
    expect(parseKey(`${g}journal.json`)).toEqual({ kind: 'journal', safe: 's', generation: 3 });
    expect(parseKey(`${g}live-000002.json`)).toEqual({
      kind: 'compaction-work',
      safe: 's',
      generation: 3,
      name: 'live-000002',
    });
    expect(parseKey(`${g}0000000007/sda.map`)).toEqual({
      kind: 'generation-map',
      safe: 's',
      generation: 3,
      rp: 7,
      device: 'sda',
    });
    expect(parseKey(`${g}0000000007/000000000004096/sda.map`)).toMatchObject({ rp: 7, first: 4096 });
    expect(parseKey('safes/s/lock.json')).toEqual({ kind: 'legacy-lease', safe: 's' });
  });

  it('orders manifests by recovery point when listed lexicographically', () => {
    const keys = [1, 2, 10, 99, 100, 12345].map((n) => manifestKey('s', n));
    expect([...keys].sort()).toEqual(keys);
  });

  it.each([
    ['outside the safes prefix', 'other/s/safe.json'],
    ['path traversal', 'safes/a/../../etc/passwd'],
    ['upper-case safe id', 'safes/A/safe.json'],
    ['recovery point 0', 'safes/a/rp/0000000000.json'],
    ['short recovery point', 'safes/a/rp/12.json'],
    ['segment in the wrong fan-out folder', `safes/a/seg/00/${'ab'.repeat(32)}.seg`],
    ['unknown object', 'safes/a/whatever.bin'],
    ['generation 0', 'safes/a/gen/0000000000.json'],
    ['unknown object in a generation', 'safes/a/gen/0000000001/other.json'],
    ['empty safe id', 'safes//safe.json'],
  ])('rejects %s', (_, key) => {
    expect(() => parseKey(key)).toThrow(BadKeyError);
  });

  it('refuses to build keys from bad parts', () => {
    expect(() => manifestKey('s', 0)).toThrow(/recovery point/);
    expect(() => segmentKey('s', 'xyz')).toThrow(/segment id/);
    expect(() => blockMapKey('s', 1, '../dev', '0123456789abcdef')).toThrow(/device id/);
    expect(() => blockMapKey('s', 1, 'dev', 'xyz')).toThrow(/run or attempt id/);
    expect(() => lockKey('s', 'short')).toThrow(/lock id/);
    expect(() => safeConfigKey('Bad Safe')).toThrow(/safe id/);
  });
});
