import { randomBytes } from 'node:crypto';
import { zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ZstdDecodeError, ZstdDecoder } from '#core/format/zstd-decoder.ts';

const block = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 65536 }),
  fc.integer({ min: 1, max: 65536 }).map((n) => Buffer.alloc(n, 'abcabcabd')),
);

describe('ZstdDecoder (one context, many frames)', () => {
  it('decodes every frame as zstdDecompressSync does, straight into the output at its offset', () => {
    const dec = new ZstdDecoder();
    const out = Buffer.alloc(65536 + 100);
    fc.assert(
      fc.property(block, fc.integer({ min: 0, max: 100 }), (plain, at) => {
        const z = zstdCompressSync(plain);
        dec.decodeInto(z, out, at, plain.length);
        expect(out.subarray(at, at + plain.length).equals(zstdDecompressSync(z))).toBe(true);
      }),
    );
    dec.close();
  });

  it('names a frame that decodes to more or fewer bytes than asked, and goes on decoding', () => {
    const dec = new ZstdDecoder();
    const plain = Buffer.alloc(4096, 'xyz');
    const z = zstdCompressSync(plain);
    const out = Buffer.alloc(8192);
    expect(() => dec.decodeInto(z, out, 0, 4095)).toThrow(/more than the 4095 bytes/);
    expect(() => dec.decodeInto(z, out, 0, 4097)).toThrow(/decodes to 4096 bytes, its header says 4097/);
    // exactly as much room as the block: a longer frame is still told apart
    expect(() => dec.decodeInto(z, out.subarray(0, 4000), 0, 4000)).toThrow(ZstdDecodeError);
    dec.decodeInto(z, out, 0, 4096);
    expect(out.subarray(0, 4096).equals(plain)).toBe(true);
  });

  it('names truncated and corrupt frames, and the next frame still decodes', () => {
    const dec = new ZstdDecoder();
    const plain = Buffer.concat([randomBytes(1000), Buffer.alloc(60000, 7)]);
    const z = zstdCompressSync(plain);
    const out = Buffer.alloc(plain.length);
    expect(() => dec.decodeInto(z.subarray(0, z.length - 10), out, 0, plain.length)).toThrow(/truncated/);
    const bad = Buffer.from(z);
    bad[5]! ^= 0xff;
    bad[20]! ^= 0xff;
    expect(() => dec.decodeInto(bad, out, 0, plain.length)).toThrow(ZstdDecodeError);
    expect(() => dec.decodeInto(randomBytes(200), out, 0, plain.length)).toThrow(ZstdDecodeError);
    dec.decodeInto(z, out, 0, plain.length);
    expect(out.equals(plain)).toBe(true);
  });
});
