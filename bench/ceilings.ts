/**
 * What this machine allows at best, measured in the same run as the tools: the embedded S3's own
 * upload and download rates (moto, one Python process, with a client that does nothing else), and
 * the disk's rate for a restore's reads and writes at once (dd with direct I/O, nothing decoded).
 *
 * A tool can be no faster than these floors, so `restic seconds / floor seconds` bounds the ratio
 * any agent could reach against restic here: when that bound is below a target, the target is
 * out of reach on this machine whatever the agent does. The floors leave out process start,
 * hashing, compression and decoding, so the bounds are generous.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { signedWithChecksum } from '../adapters/s3-store.ts';
import { DEFAULT_SEGMENT_BYTES } from '../core/format/constants.ts';
import { MB, MiB } from './measure.ts';

export interface S3Ceiling {
  /** Bytes moved each way. */
  readonly bytes: number;
  /** Best PutObject rate over the in-flight counts tried, decimal MB/s. */
  readonly putMBps: number;
  /** Best whole-object GetObject rate, decimal MB/s. */
  readonly getMBps: number;
  readonly inFlight: Record<number, { putMBps: number; getMBps: number }>;
}

export interface DiskCeiling {
  readonly readBytes: number;
  readonly writeBytes: number;
  /** Seconds for both at once (direct I/O, 4 MiB requests). */
  readonly seconds: number;
}

export interface Ceilings {
  readonly s3?: S3Ceiling;
  readonly disk?: DiskCeiling;
}

/** Runs `n` tasks, `inFlight` at a time. */
async function pool(n: number, inFlight: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < n) await task(next++);
    }),
  );
}

/**
 * Segment-sized objects (32 MiB of random bytes, as incompressible as the image's random third)
 * uploaded with single PUTs and read back whole, with 1, 2 and 4 requests in flight.
 */
export async function s3Ceiling(s3: S3Client, bucket: string, bytes: number): Promise<S3Ceiling> {
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const body = randomBytes(DEFAULT_SEGMENT_BYTES);
  const checksum = createHash('sha256').update(body).digest('base64');
  const objects = Math.max(4, Math.ceil(bytes / body.length));
  const moved = objects * body.length;
  const inFlight: Record<number, { putMBps: number; getMBps: number }> = {};
  for (const n of [1, 2, 4]) {
    const key = (i: number) => `ceiling/${n}/${String(i).padStart(4, '0')}`;
    let t0 = performance.now();
    await pool(objects, n, async (i) => {
      await s3.send(
        signedWithChecksum(
          new PutObjectCommand({
            Bucket: bucket,
            Key: key(i),
            Body: body,
            ChecksumAlgorithm: 'SHA256',
            ChecksumSHA256: checksum,
          }),
        ),
      );
    });
    const putMBps = MB(moved, (performance.now() - t0) / 1000);
    t0 = performance.now();
    await pool(objects, n, async (i) => {
      const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key(i) }));
      let got = 0;
      for await (const c of r.Body as AsyncIterable<Uint8Array>) got += c.byteLength;
      if (got !== body.length) throw new Error(`${key(i)}: read ${got} bytes, wrote ${body.length}`);
    });
    inFlight[n] = { putMBps, getMBps: MB(moved, (performance.now() - t0) / 1000) };
  }
  const best = (f: (x: { putMBps: number; getMBps: number }) => number) =>
    Math.max(...Object.values(inFlight).map(f));
  return { bytes: moved, putMBps: best((x) => x.putMBps), getMBps: best((x) => x.getMBps), inFlight };
}

function dd(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('dd', [...args, 'bs=4M', 'status=none'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`dd ${args.join(' ')}: ${err}`))));
  });
}

/**
 * A restore's disk work alone: `readBytes` read from a file not in the page cache while
 * `writeBytes` are written to another, both with direct I/O, at once (in `dir`, on the disk the
 * bench restores to).
 */
export async function diskCeiling(dir: string, readBytes: number, writeBytes: number): Promise<DiskCeiling> {
  const src = join(dir, 'ceiling-read.bin');
  const dst = join(dir, 'ceiling-write.bin');
  const blocks = (n: number) => String(Math.ceil(n / (4 * 2 ** 20)));
  try {
    // written with direct I/O, so none of it is in the page cache when it is read back
    await dd(['if=/dev/zero', `of=${src}`, `count=${blocks(readBytes)}`, 'oflag=direct']);
    const t0 = performance.now();
    await Promise.all([
      dd([`if=${src}`, 'of=/dev/null', 'iflag=direct']),
      dd(['if=/dev/zero', `of=${dst}`, `count=${blocks(writeBytes)}`, 'oflag=direct']),
    ]);
    return { readBytes, writeBytes, seconds: (performance.now() - t0) / 1000 };
  } finally {
    rmSync(src, { force: true });
    rmSync(dst, { force: true });
  }
}

/** The best ratio against restic that a tool could reach if it took no longer than `floorSeconds`. */
export const boundRatio = (resticSeconds: number, floorSeconds: number): number =>
  resticSeconds / floorSeconds;

export function printCeilings(c: Ceilings): void {
  console.log('\n## Environment ceilings (same run; what any agent could reach here at best)\n');
  console.log('| what | measured |\n|---|---|');
  if (c.s3) {
    const per = Object.entries(c.s3.inFlight)
      .map(([n, v]) => `${n} in flight: PUT ${v.putMBps.toFixed(0)}, GET ${v.getMBps.toFixed(0)}`)
      .join('; ');
    console.log(
      `| embedded S3 (moto), ${MiB(c.s3.bytes).toFixed(0)} MiB of 32 MiB objects, nothing else running | ` +
        `PUT ${c.s3.putMBps.toFixed(0)} MB/s, GET ${c.s3.getMBps.toFixed(0)} MB/s (${per}) |`,
    );
  }
  if (c.disk) {
    console.log(
      `| disk, direct I/O: read ${MiB(c.disk.readBytes).toFixed(0)} MiB while writing ${MiB(c.disk.writeBytes).toFixed(0)} MiB | ` +
        `${c.disk.seconds.toFixed(2)} s |`,
    );
  }
}
