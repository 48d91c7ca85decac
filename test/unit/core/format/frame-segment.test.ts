import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { blockIdentity, deriveKeys } from '#core/format/crypto.ts';
import { decodeFrame, encodeFrame, FRAME_HEADER_BYTES } from '#core/format/frame.ts';
import {
  parseSegmentHeader,
  parseSegmentIndex,
  parseSegmentTrailer,
  SEGMENT_TRAILER_BYTES,
  segmentFooter,
  segmentHeader,
  splitSegmentFooter,
} from '#core/format/segment.ts';

const keys = deriveKeys(randomBytes(32), randomBytes(16));
const blocks = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 8192 }),
  fc.integer({ min: 1, max: 8192 }).map((n) => new Uint8Array(n).fill(7)),
);

describe('frame', () => {
  it('round-trips plain and encrypted blocks, compressing when it helps', () => {
    fc.assert(
      fc.property(blocks, fc.boolean(), (plain, enc) => {
        const idKey = enc ? keys.idKey : undefined;
        const frame = encodeFrame(plain, blockIdentity(plain, idKey), {
          dataKey: enc ? keys.dataKey : undefined,
        });
        const d = decodeFrame(frame, 0, { dataKey: enc ? keys.dataKey : undefined, idKey });
        expect(Buffer.compare(d.plain, Buffer.from(plain))).toBe(0);
        expect(d.frameLength).toBe(frame.length);
      }),
    );
    const text = Buffer.alloc(65536, 'abcdefgh');
    expect(encodeFrame(text, blockIdentity(text, undefined)).length).toBeLessThan(2000);
  });

  it('keyed identities reveal nothing: same block, different keys, different ids', () => {
    const b = Buffer.alloc(4096, 1);
    const other = deriveKeys(randomBytes(32), randomBytes(16));
    expect(blockIdentity(b, keys.idKey).equals(blockIdentity(b, other.idKey))).toBe(false);
  });

  it('detects a flipped byte, a wrong key and a truncation', () => {
    const plain = randomBytes(4096);
    const f = encodeFrame(plain, blockIdentity(plain, undefined));
    const flipped = Buffer.from(f);
    flipped[FRAME_HEADER_BYTES + 100]! ^= 1;
    expect(() => decodeFrame(flipped, 0)).toThrow(/checksum mismatch/);
    expect(() => decodeFrame(f.subarray(0, f.length - 1), 0)).toThrow(/truncated/);
    const e = encodeFrame(plain, blockIdentity(plain, keys.idKey), { dataKey: keys.dataKey });
    const wrong = deriveKeys(randomBytes(32), randomBytes(16));
    expect(() => decodeFrame(e, 0, { dataKey: wrong.dataKey, idKey: wrong.idKey })).toThrow(
      /authentication failed/,
    );
  });
});

describe('segment', () => {
  it('lists its frames from the footer alone', () => {
    const frames = [randomBytes(5000), Buffer.alloc(4096)].map((p) => ({
      p,
      f: encodeFrame(p, blockIdentity(p, undefined)),
    }));
    const parts: Buffer[] = [segmentHeader(false)];
    let off = parts[0]!.length;
    const entries = frames.map(({ p, f }) => {
      const e = {
        identity: blockIdentity(p, undefined),
        offset: off,
        frameLength: f.length,
        plainLength: p.length,
      };
      parts.push(f);
      off += f.length;
      return e;
    });
    const binding = { segment: 'ab'.repeat(32), safe: 'safe-a' };
    const seg = Buffer.concat([...parts, segmentFooter(entries, off, binding)]);
    expect(parseSegmentHeader(seg)).toEqual({ version: 2, encrypted: false });
    const t = parseSegmentTrailer(seg.subarray(seg.length - SEGMENT_TRAILER_BYTES), seg.length);
    expect(t.version).toBe(2);
    const index = seg.subarray(t.indexOffset, t.indexOffset + t.indexLength);
    const listed = parseSegmentIndex(index, t, binding);
    expect(listed).toEqual(entries);
    for (const e of listed) expect(decodeFrame(seg, e.offset).plain.length).toBe(e.plainLength);
    expect(() =>
      parseSegmentTrailer(seg.subarray(seg.length - SEGMENT_TRAILER_BYTES), seg.length + 1),
    ).toThrow(/does not fit/);
    expect(() => parseSegmentTrailer(seg.subarray(0, SEGMENT_TRAILER_BYTES), seg.length)).toThrow(
      /trailer missing/,
    );

    // the footer from one read at the end: the index comes with it when the read reaches back far enough
    const footerBytes = seg.length - t.indexOffset;
    const whole = splitSegmentFooter(seg.subarray(seg.length - footerBytes - 5), seg.length);
    expect(whole.trailer).toEqual(t);
    expect(parseSegmentIndex(whole.index!, whole.trailer, binding)).toEqual(entries);
    const short = splitSegmentFooter(seg.subarray(seg.length - footerBytes + 1), seg.length);
    expect(short).toEqual({ trailer: t, index: undefined });
    expect(() => splitSegmentFooter(seg.subarray(seg.length - 31), seg.length)).toThrow(/trailer missing/);

    // the footer proves which segment, of which safe, it is
    expect(() => parseSegmentIndex(index, t, { ...binding, segment: 'cd'.repeat(32) })).toThrow(
      new RegExp(`holds segment ${'ab'.repeat(32)}, not segment ${'cd'.repeat(32)}`),
    );
    expect(() => parseSegmentIndex(index, t, { ...binding, safe: 'safe-b' })).toThrow(
      /belongs to another safe, not to safe safe-b/,
    );
  });
});
