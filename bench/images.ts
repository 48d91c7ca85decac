/**
 * Deterministic benchmark images, a TypeScript port of shared/bench/make-image.sh and
 * mutate-image.sh: ~40% zero regions, ~30% text (seeded line shuffles of /usr/share/doc),
 * ~30% incompressible (AES-256-CTR keystream), regions of 256 KiB..2 MiB in 64 KiB steps;
 * same approach and proportions as the shell scripts, not the same bytes (different PRNG).
 */
import { createCipheriv, createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fsyncSync,
  ftruncateSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

const KiB = 1024;
const MiB = 1024 * KiB;

/** xoshiro128** seeded through splitmix32: small, fast and deterministic. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(seed: number) {
    let x = seed >>> 0;
    const mix = (): number => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = mix();
    this.b = mix();
    this.c = mix();
    this.d = mix();
  }
  next(): number {
    const r = Math.imul(rotl(Math.imul(this.b, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.b << 9) >>> 0;
    this.c = (this.c ^ this.a) >>> 0;
    this.d = (this.d ^ this.b) >>> 0;
    this.b = (this.b ^ this.c) >>> 0;
    this.a = (this.a ^ this.d) >>> 0;
    this.c = (this.c ^ t) >>> 0;
    this.d = rotl(this.d, 11);
    return r;
  }
  /** Uniform float in [0, 1) with 53 bits. */
  random(): number {
    return ((this.next() >>> 5) * 67108864 + (this.next() >>> 6)) / 9007199254740992;
  }
  /** Uniform integer in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.random() * (hi - lo + 1));
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** A keystream of AES-256-CTR over zeros, key and iv derived from a label and the seed. */
export function keystream(label: string, seed: number): (n: number) => Buffer {
  const key = createHash('sha256').update(`${label}-key-${seed}`).digest();
  const iv = createHash('sha256').update(`${label}-iv-${seed}`).digest().subarray(0, 16);
  const c = createCipheriv('aes-256-ctr', key, iv);
  return (n) => c.update(Buffer.alloc(n));
}

const SKIP_EXT = /\.(png|jpg|gif|ico|pdf|woff2?|ttf|svgz|bz2|xz|zip)$/;
const isBinary = (b: Buffer) => b.subarray(0, 32 * KiB).includes(0);

/** Regular files under `dir`, recursively, not following symlinks (like `find -type f`). */
function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? listFiles(p) : e.isFile() ? [p] : [];
  });
}

export interface Corpus {
  readonly data: Buffer;
  /** Line i is data[starts[i], ends[i]) including its newline; blank lines dropped. */
  readonly starts: Uint32Array;
  readonly ends: Uint32Array;
  readonly sha16: string;
}

let corpusCache: Corpus | undefined;

/** Text files of /usr/share/doc and /usr/share/common-licenses, .gz decompressed, binaries skipped. */
export function loadCorpus(): Corpus {
  if (corpusCache) return corpusCache;
  const files = ['/usr/share/doc', '/usr/share/common-licenses'].flatMap(listFiles);
  files.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const parts: Buffer[] = [];
  for (const f of files) {
    if (SKIP_EXT.test(f)) continue;
    try {
      const raw = readFileSync(f);
      const b = f.endsWith('.gz') ? gunzipSync(raw) : raw;
      if (b.length > 0 && !isBinary(b)) parts.push(b);
    } catch {
      /* unreadable or corrupt .gz: skipped */
    }
  }
  const data = Buffer.concat(parts);
  const starts: number[] = [];
  const ends: number[] = [];
  let p = 0;
  while (p < data.length) {
    let nl = data.indexOf(10, p);
    nl = nl < 0 ? data.length : nl + 1;
    if (!isBlank(data, p, nl)) {
      starts.push(p);
      ends.push(nl);
    }
    p = nl;
  }
  const sha16 = createHash('sha256').update(data).digest('hex').slice(0, 16);
  corpusCache = { data, starts: Uint32Array.from(starts), ends: Uint32Array.from(ends), sha16 };
  return corpusCache;
}

function isBlank(b: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = b[i]!;
    if (c !== 32 && (c < 9 || c > 13)) return false;
  }
  return true;
}

/** Endless text: pass p is the corpus lines in a shuffle seeded by (seed, p). */
class TextStream {
  private pass = 0;
  private perm = new Uint32Array(0);
  private idx = 0;
  private inLine = 0;
  private readonly c: Corpus;
  private readonly seed: number;
  constructor(c: Corpus, seed: number) {
    this.c = c;
    this.seed = seed;
    this.shuffle();
  }
  private shuffle(): void {
    const n = this.c.starts.length;
    const r = new Rng((Math.imul(this.seed, 1000003) + this.pass) >>> 0);
    const perm = new Uint32Array(n);
    for (let i = 0; i < n; i++) perm[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = r.int(0, i);
      const t = perm[i]!;
      perm[i] = perm[j]!;
      perm[j] = t;
    }
    this.perm = perm;
    this.idx = 0;
    this.inLine = 0;
  }
  fill(out: Buffer): void {
    let o = 0;
    while (o < out.length) {
      if (this.idx >= this.perm.length) {
        this.pass++;
        this.shuffle();
      }
      const line = this.perm[this.idx]!;
      const s = this.c.starts[line]! + this.inLine;
      const e = this.c.ends[line]!;
      const n = Math.min(e - s, out.length - o);
      this.c.data.copy(out, o, s, s + n);
      o += n;
      if (s + n >= e) {
        this.idx++;
        this.inLine = 0;
      } else this.inLine += n;
    }
  }
}

export interface ImageInfo {
  readonly bytes: number;
  readonly zero: number;
  readonly text: number;
  readonly random: number;
  readonly corpusSha16: string;
}

/** Writes a SIZE_MIB image to `path` (real zeros, not sparse) and `path.map` with its regions. */
export function makeImage(sizeMiB: number, path: string, seed: number): ImageInfo {
  const total = sizeMiB * MiB;
  const rng = new Rng(seed);
  const corpus = loadCorpus();
  const text = new TextStream(corpus, seed);
  const rnd = keystream('make-image', seed);
  const zero = Buffer.alloc(2 * MiB);
  const buf = Buffer.alloc(2 * MiB);
  const stats = { zero: 0, text: 0, random: 0 };
  const map: string[] = [
    `# bench/images.ts size_mib=${sizeMiB} seed=${seed} corpus_sha256_16=${corpus.sha16} corpus_lines=${corpus.starts.length}`,
    '# offset length type',
  ];
  const fd = openSync(path, 'w');
  try {
    let off = 0;
    while (off < total) {
      const n = Math.min(rng.int(4, 32) * 64 * KiB, total - off);
      const x = rng.random();
      const t = x < 0.4 ? 'zero' : x < 0.7 ? 'text' : 'random';
      let b: Buffer;
      if (t === 'zero') b = zero.subarray(0, n);
      else if (t === 'text') {
        b = buf.subarray(0, n);
        text.fill(b);
      } else b = rnd(n);
      writeAll(fd, b, off);
      map.push(`${off} ${n} ${t}`);
      stats[t] += n;
      off += n;
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  writeFileSync(`${path}.map`, `${map.join('\n')}\n`);
  return { bytes: total, ...stats, corpusSha16: corpus.sha16 };
}

export interface SparseImageInfo {
  readonly bytes: number;
  /** Bytes written (the rest are holes, read back as zeros). */
  readonly data: number;
  readonly text: number;
  readonly random: number;
  readonly regions: number;
  readonly corpusSha16: string;
}

/**
 * A sparse image of `sizeGiB` (ftruncate: holes) with `dataMiB` of data written in `regions`
 * equal runs, one at a random MiB-aligned place in each of `regions` equal slices of the image;
 * each run is text and incompressible data in 256 KiB..2 MiB pieces, as in makeImage.
 */
export function makeSparseImage(
  sizeGiB: number,
  dataMiB: number,
  regions: number,
  path: string,
  seed: number,
): SparseImageInfo {
  const total = sizeGiB * 1024 * MiB;
  const run = Math.floor(dataMiB / regions) * MiB;
  const slot = Math.floor(total / regions / MiB) * MiB;
  if (run < MiB || run > slot) throw new Error('need 1 MiB <= data per region <= image size / regions');
  const rng = new Rng((0x5a5e0000 + seed) >>> 0);
  const corpus = loadCorpus();
  const text = new TextStream(corpus, seed);
  const rnd = keystream('sparse-image', seed);
  const buf = Buffer.alloc(2 * MiB);
  const stats = { text: 0, random: 0 };
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, total);
    for (let r = 0; r < regions; r++) {
      let off = r * slot + rng.int(0, (slot - run) / MiB) * MiB;
      const end = off + run;
      while (off < end) {
        const n = Math.min(rng.int(4, 32) * 64 * KiB, end - off);
        const isText = rng.random() < 0.5;
        let b: Buffer;
        if (isText) {
          b = buf.subarray(0, n);
          text.fill(b);
        } else b = rnd(n);
        writeAll(fd, b, off);
        stats[isText ? 'text' : 'random'] += n;
        off += n;
      }
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return { bytes: total, data: stats.text + stats.random, ...stats, regions, corpusSha16: corpus.sha16 };
}

function writeAll(fd: number, b: Buffer, pos: number): void {
  let done = 0;
  while (done < b.length) done += writeSync(fd, b, done, b.length - done, pos + done);
}

export interface MutationInfo {
  readonly writes: number;
  readonly bytesWritten: number;
  readonly distinctBytes: number;
  /** MiB dirty (to re-read/re-send) at each block size, keyed by size in KiB. */
  readonly dirtyMiB: Record<string, number>;
  /** The byte extents written, merged ([offset, length], ascending): a changed list a tracker would give. */
  readonly changed: [number, number][];
}

/** Rewrites PERCENT% of the distinct 4 KiB blocks of `path` in place with 4-64 KiB writes. */
export function mutateImage(path: string, percent: number, seed: number): MutationInfo {
  const B = 4 * KiB;
  const size = statSync(path).size;
  const nblk = Math.floor(size / B);
  const target = Math.ceil((nblk * percent) / 100);
  const rng = new Rng((0x5eed0000 + seed) >>> 0);
  const rnd = keystream('mutate-image', seed);
  const touched = new Uint8Array(nblk);
  let ntouched = 0;
  let writes = 0;
  let written = 0;
  const fd = openSync(path, 'r+');
  try {
    while (ntouched < target) {
      const k = Math.min(rng.int(1, 16), nblk);
      const start = rng.int(0, nblk - k);
      writeAll(fd, rnd(k * B), start * B);
      for (let i = start; i < start + k; i++) {
        if (!touched[i]) {
          touched[i] = 1;
          ntouched++;
        }
      }
      writes++;
      written += k * B;
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const dirtyMiB: Record<string, number> = {};
  for (const bs of [4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, MiB]) {
    const per = bs / B;
    let dirty = 0;
    for (let j = 0; j < nblk; j += per) {
      for (let i = j; i < Math.min(j + per, nblk); i++) {
        if (touched[i]) {
          dirty++;
          break;
        }
      }
    }
    dirtyMiB[`${bs / KiB}K`] = (dirty * bs) / MiB;
  }
  const changed: [number, number][] = [];
  for (let i = 0; i < nblk; i++) {
    if (!touched[i]) continue;
    const last = changed[changed.length - 1];
    if (last && last[0] + last[1] === i * B) last[1] += B;
    else changed.push([i * B, B]);
  }
  return { writes, bytesWritten: written, distinctBytes: ntouched * B, dirtyMiB, changed };
}
