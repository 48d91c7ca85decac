import { describe, expect, it } from 'vitest';
import { decodeManifest, encodeJson } from '#core/format/manifest.ts';

const manifest = {
  format: 'cdp-manifest',
  version: 2,
  safe: 's1',
  rp: 1,
  parent: null,
  createdAt: '2026-12-03T18:59:48.642Z',
  view: 0,
  agent: 'agent-1',
  encrypted: false,
  devices: [],
  segments: [],
  stats: { scannedBytes: 0, changedBytes: 0, storedBytes: 0, durationMs: 0 },
};

describe('manifest decoding', () => {
  it('refuses a capture time that is not a date and time, naming the field (retention orders RPs by it)', () => {
    const key = 'safes/s1/rp/0000000001.json';
    expect(() => decodeManifest(encodeJson({ ...manifest, createdAt: '{i' }), key)).toThrow(
      /createdAt.*not a date and time|not a date and time.*createdAt/s,
    );
    expect(() => decodeManifest(encodeJson({ ...manifest, createdAt: '{i' }), key)).toThrow(key);
  });
});
