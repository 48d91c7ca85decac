import { randomBytes } from 'node:crypto';
import { constants, zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ZstdEncoder } from '#core/format/zstd-encoder.ts';

describe('ZstdEncoder (one context, many frames)', () => {
  it('emits for every block the same independent frame as zstdCompressSync', () => {
    const enc = new ZstdEncoder(1, 65536);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ minLength: 0, maxLength: 65536 }),
          fc.integer({ min: 1, max: 65536 }).map((n) => Buffer.alloc(n, 'abcabcabd')),
        ),
        (block) => {
          const z = enc.compress(block)!;
          expect(zstdDecompressSync(z).equals(Buffer.from(block))).toBe(true);
          const oneShot = zstdCompressSync(block, {
            params: { [constants.ZSTD_c_compressionLevel]: 1, [constants.ZSTD_c_checksumFlag]: 0 },
          });
          expect(z.equals(oneShot)).toBe(true);
        },
      ),
    );
    enc.close();
  });

  it('handles incompressible blocks of the largest block size', () => {
    const enc = new ZstdEncoder(1, 512 * 1024);
    for (let i = 0; i < 5; i++) {
      const b = randomBytes(512 * 1024);
      const z = enc.compress(b);
      expect(z).toBeDefined();
      expect(zstdDecompressSync(z!).equals(b)).toBe(true);
    }
    enc.close();
  });
});
