/**
 * ObjectStore on an S3 prefix. The safe at `s3://bucket/safes/db1` holds the key
 * `safes/db1/<rest>` at `safes/db1/<rest>`; another prefix maps the same way. Uploads carry SHA-256
 * checksums so S3 verifies them.
 *
 * Streamed objects (`openWriter`) are multipart uploads of `partSize` parts, at most `queueSize`
 * parts in flight over all of the store's writers, each sent from a part buffer the store
 * recycles: memory is about (queueSize + open writers) × partSize however many objects are being
 * written. (lib-storage's Upload held up to queueSize + 1 parts per object and a fresh buffer per
 * part.) An object smaller than one part is sent with one PutObject.
 */

import { createHash } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  NoSuchKey,
  NotFound,
  PutObjectCommand,
  type S3Client,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { BuildHandler, BuildHandlerArguments, MiddlewareStack } from '@smithy/types';
import { contentRangeSize, readStreamInto, viewOf } from '#core/bytes.ts';
import { NotFoundError } from '#core/errors.ts';
import { safePrefix } from '#core/keys.ts';
import type { ObjectInfo, ObjectStore, ObjectTail, ObjectWriter } from '#core/ports/object-store.ts';

export interface S3StoreOptions {
  /** Multipart part size (S3's minimum is 5 MiB). @default 5 MiB */
  readonly partSize?: number;
  /**
   * Parts uploaded in parallel, over all of the store's writers. @default 2 (more bought no speed
   * against the embedded S3 and cost 17 MiB of peak memory in a full backup)
   */
  readonly queueSize?: number;
}

/** A counting semaphore. */
class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];
  constructor(n: number) {
    this.free = n;
  }
  async acquire(): Promise<void> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
  }
  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }
}

/**
 * The SHA-256 checksum S3 verifies an upload against (the object is stored only if it matches).
 * Computed here with node:crypto (native, 1.8 GB/s) rather than by the SDK, whose CRC32C is a
 * JavaScript loop at about 1 GB/s; WebCrypto would hash off this thread but copies each body
 * first (measured: +15 MiB peak memory in a full backup).
 */
function sha256Checksum(body: Uint8Array): { ChecksumAlgorithm: 'SHA256'; ChecksumSHA256: string } {
  return { ChecksumAlgorithm: 'SHA256', ChecksumSHA256: createHash('sha256').update(body).digest('base64') };
}

/**
 * Sends an upload whose body's SHA-256 is already known as its x-amz-content-sha256 header too:
 * Signature V4 signs that header, and the SDK's signer then uses it instead of hashing the body a
 * second time on this thread (S3 still checks the body against it).
 */
export function signedWithChecksum<C extends PutObjectCommand | UploadPartCommand>(command: C): C {
  const base64 = command.input.ChecksumSHA256;
  if (base64 === undefined) return command;
  const hex = Buffer.from(base64, 'base64').toString('hex');
  (command.middlewareStack as unknown as MiddlewareStack<object, object>).add(
    (next: BuildHandler<object, object>) => (args: BuildHandlerArguments<object>) => {
      const request = args.request as { headers?: Record<string, string> };
      if (request.headers) request.headers['x-amz-content-sha256'] = hex;
      return next(args);
    },
    { step: 'build', name: 'cdpPayloadSha256' },
  );
  return command;
}

function notFound(e: unknown): boolean {
  return (
    e instanceof NoSuchKey ||
    e instanceof NotFound ||
    (e instanceof S3ServiceException && (e.$metadata.httpStatusCode === 404 || e.name === 'NoSuchKey'))
  );
}

export class S3ObjectStore implements ObjectStore {
  readonly location: string;
  private readonly s3: S3Client;
  private readonly bucket: string;
  private readonly safePrefix: string;
  private readonly base: string;
  private readonly opts: Required<S3StoreOptions>;
  private readonly uploads: Slots;
  private readonly spareParts: Buffer[] = [];

  /** `prefix` is where the safe lives in the bucket (usually `safes/<safe>`). */
  constructor(s3: S3Client, bucket: string, prefix: string, safe: string, opts: S3StoreOptions = {}) {
    this.s3 = s3;
    this.bucket = bucket;
    this.safePrefix = safePrefix(safe);
    this.base = prefix.replace(/\/*$/, '/');
    this.location = `s3://${bucket}/${this.base.slice(0, -1)}`;
    this.opts = { partSize: opts.partSize ?? 5 * 1024 * 1024, queueSize: opts.queueSize ?? 2 };
    this.uploads = new Slots(this.opts.queueSize);
  }

  private objectKey(key: string): string {
    if (!key.startsWith(this.safePrefix)) throw new Error(`key ${key} is not in safe ${this.safePrefix}`);
    return this.base + key.slice(this.safePrefix.length);
  }

  private safeKey(objectKey: string): string {
    return this.safePrefix + objectKey.slice(this.base.length);
  }

  /** GetObject of the key (or a range of it); NotFoundError when there is no such object. */
  private async getObject(key: string, range?: string): Promise<GetObjectCommandOutput> {
    try {
      return await this.s3.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key), Range: range }),
      );
    } catch (e) {
      if (notFound(e)) throw new NotFoundError(`object ${key}`, { key, path: this.location });
      throw e;
    }
  }

  /** The object's bytes (or a range of them); with `into`, copied into it as they arrive. */
  private async getBody(key: string, range?: string, into?: Buffer): Promise<Buffer> {
    const r = await this.getObject(key, range);
    if (into) return await readStreamInto(r.Body as AsyncIterable<Uint8Array>, into, `${key} ${range}`);
    return Buffer.from(await r.Body!.transformToByteArray());
  }

  get(key: string): Promise<Buffer> {
    return this.getBody(key);
  }

  async getRange(key: string, offset: number, length: number, into?: Uint8Array): Promise<Buffer> {
    const b = await this.getBody(key, `bytes=${offset}-${offset + length - 1}`, into && viewOf(into, length));
    if (b.length !== length) throw new Error(`${key}: range ${offset}+${length} returned ${b.length} bytes`);
    return b;
  }

  async getTail(key: string, length: number): Promise<ObjectTail> {
    let r: GetObjectCommandOutput;
    try {
      r = await this.getObject(key, `bytes=-${length}`);
    } catch (e) {
      // S3 answers a suffix range on an empty object with 416
      if ((e as S3ServiceException).$metadata?.httpStatusCode === 416)
        return { bytes: Buffer.alloc(0), size: 0 };
      throw e;
    }
    const bytes = Buffer.from(await r.Body!.transformToByteArray());
    // without a Content-Range the whole (short) object came back
    return { bytes, size: contentRangeSize(r.ContentRange) ?? bytes.length };
  }

  presignGet(key: string, seconds: number): Promise<string> {
    return getSignedUrl(this.s3, new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }), {
      expiresIn: seconds,
    });
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const r = await this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
      return { key, size: r.ContentLength ?? 0, modified: r.LastModified, version: r.ETag };
    } catch (e) {
      if (notFound(e)) return undefined;
      throw e;
    }
  }

  /**
   * PutObject of the same bytes with If-Match: S3 stamps a new LastModified, or refuses. A refusal
   * because another writer of the same bytes re-stamped it meanwhile (the tasks of one compaction
   * job share its lock; under SSE-KMS two PUTs of one body have different ETags) is retried with the
   * current ETag; the object gone, or holding other bytes, is "no longer ours".
   */
  async restamp(key: string, body: Uint8Array, version: string): Promise<string | undefined> {
    let etag = version;
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const r = await this.s3.send(
          signedWithChecksum(
            new PutObjectCommand({
              Bucket: this.bucket,
              Key: this.objectKey(key),
              Body: body,
              IfMatch: etag,
              ...sha256Checksum(body),
            }),
          ),
        );
        return r.ETag ?? etag;
      } catch (e) {
        const status = (e as S3ServiceException).$metadata?.httpStatusCode;
        if (notFound(e)) return undefined;
        // 412: re-stamped by another holder of the same lock (or replaced); 409: a concurrent write
        if (status !== 412 && status !== 409) throw e;
        const now = await this.head(key);
        if (!now?.version) return undefined;
        const there = await this.get(key).catch(() => undefined);
        if (!there || !there.equals(Buffer.from(body.buffer, body.byteOffset, body.length))) return undefined;
        etag = now.version;
      }
    }
    return undefined;
  }

  /**
   * Aborts the multipart uploads under the safe's prefix whose last sign of life (started, or a
   * part uploaded) is before `before`. Parts count because a long write is alive while it uploads,
   * and because moto reports every upload's `Initiated` as 2010-11-10T20:48:33Z.
   */
  async cleanTemporaries(before: Date): Promise<number> {
    let removed = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const r = await this.s3.send(
        new ListMultipartUploadsCommand({
          Bucket: this.bucket,
          Prefix: this.base,
          KeyMarker: keyMarker,
          UploadIdMarker: uploadIdMarker,
        }),
      );
      for (const u of r.Uploads ?? []) {
        if (!u.Key || !u.UploadId || !u.Initiated || u.Initiated >= before) continue;
        if (await this.partUploadedSince(u.Key, u.UploadId, before)) continue;
        await this.s3
          .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId }))
          .catch((e) => {
            if (!notFound(e)) throw e;
          });
        removed++;
      }
      keyMarker = r.IsTruncated ? r.NextKeyMarker : undefined;
      uploadIdMarker = r.IsTruncated ? r.NextUploadIdMarker : undefined;
    } while (keyMarker);
    return removed;
  }

  /** Whether the upload has a part uploaded at or after `since` (false once it is gone). */
  private async partUploadedSince(Key: string, UploadId: string, since: Date): Promise<boolean> {
    let marker: string | undefined;
    do {
      const r = await this.s3
        .send(new ListPartsCommand({ Bucket: this.bucket, Key, UploadId, PartNumberMarker: marker }))
        .catch((e) => {
          if (notFound(e)) return undefined;
          throw e;
        });
      if (!r) return false;
      if ((r.Parts ?? []).some((p) => p.LastModified && p.LastModified >= since)) return true;
      marker = r.IsTruncated ? r.NextPartNumberMarker : undefined;
    } while (marker);
    return false;
  }

  /** A checksummed PutObject of `body`; with `ifAbsent`, one that S3 refuses over an existing key. */
  private putCommand(key: string, body: Uint8Array, ifAbsent = false): PutObjectCommand {
    return signedWithChecksum(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: this.objectKey(key),
        Body: body,
        ...(ifAbsent ? { IfNoneMatch: '*' } : {}),
        ...sha256Checksum(body),
      }),
    );
  }

  async put(key: string, body: Uint8Array): Promise<void> {
    await this.s3.send(this.putCommand(key, body));
  }

  async putIfAbsent(key: string, body: Uint8Array): Promise<boolean> {
    try {
      await this.s3.send(this.putCommand(key, body, true));
      return true;
    } catch (e) {
      const status = (e as S3ServiceException).$metadata?.httpStatusCode;
      if (status === 412 || status === 409) return false;
      throw e;
    }
  }

  async delete(key: string): Promise<void> {
    await this.s3.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    if (!prefix.startsWith(this.safePrefix)) return [];
    const out: ObjectInfo[] = [];
    let token: string | undefined;
    do {
      const r = await this.s3.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: this.objectKey(prefix),
          ContinuationToken: token,
        }),
      );
      for (const o of r.Contents ?? [])
        out.push({ key: this.safeKey(o.Key!), size: o.Size ?? 0, modified: o.LastModified });
      token = r.NextContinuationToken;
    } while (token);
    return out;
  }

  openWriter(key: string): ObjectWriter {
    const { s3, bucket, uploads, spareParts } = this;
    const { partSize } = this.opts;
    const Key = this.objectKey(key);
    let part: Buffer | undefined;
    let used = 0;
    let size = 0;
    let partCount = 0;
    let uploadId: Promise<string> | undefined;
    const parts: CompletedPart[] = [];
    const inFlight = new Set<Promise<void>>();
    let failed: unknown;
    const multipart = (): Promise<string> => {
      if (!uploadId) {
        uploadId = s3
          .send(new CreateMultipartUploadCommand({ Bucket: bucket, Key, ChecksumAlgorithm: 'SHA256' }))
          .then((r) => r.UploadId!);
        uploadId.catch(() => undefined);
      }
      return uploadId;
    };
    const releasePart = (b: Buffer) => {
      spareParts.push(b);
    };
    /** Uploads the full part `b` (the caller holds an upload slot, released here). */
    const ship = (b: Buffer, length: number) => {
      const PartNumber = ++partCount;
      const p = (async () => {
        try {
          const UploadId = await multipart();
          const Body = b.subarray(0, length);
          const checksum = sha256Checksum(Body);
          const r = await s3.send(
            signedWithChecksum(
              new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber, Body, ...checksum }),
            ),
          );
          parts[PartNumber - 1] = { PartNumber, ETag: r.ETag, ChecksumSHA256: checksum.ChecksumSHA256 };
        } catch (e) {
          failed ??= e;
        } finally {
          uploads.release();
          releasePart(b);
        }
      })();
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
    };
    const abortUpload = async () => {
      await Promise.allSettled(inFlight);
      if (uploadId) {
        const UploadId = await uploadId.catch(() => undefined);
        if (UploadId)
          await s3
            .send(new AbortMultipartUploadCommand({ Bucket: bucket, Key, UploadId }))
            .catch(() => undefined);
      }
    };
    return {
      async write(chunks) {
        for (const chunk of Array.isArray(chunks) ? chunks : [chunks]) {
          // copied into the part buffer: the caller may reuse `chunk` once this resolves
          for (let o = 0; o < chunk.length; ) {
            if (failed) throw failed;
            part ??= spareParts.pop() ?? Buffer.allocUnsafeSlow(partSize);
            const n = Math.min(chunk.length - o, partSize - used);
            part.set(chunk.subarray(o, o + n), used);
            used += n;
            o += n;
            size += n;
            if (used === partSize) {
              // bounded memory: wait for an upload slot before taking another part buffer
              await uploads.acquire();
              ship(part, used);
              part = undefined;
              used = 0;
            }
          }
        }
      },
      async finish() {
        if (partCount === 0) {
          await uploads.acquire();
          try {
            const Body = part ? part.subarray(0, used) : Buffer.alloc(0);
            await s3.send(
              signedWithChecksum(
                new PutObjectCommand({ Bucket: bucket, Key, Body, ...sha256Checksum(Body) }),
              ),
            );
          } finally {
            uploads.release();
            if (part) releasePart(part);
            part = undefined;
          }
          return { key, size };
        }
        if (used > 0) {
          await uploads.acquire();
          ship(part!, used);
          part = undefined;
          used = 0;
        }
        await Promise.allSettled(inFlight);
        if (failed) {
          await abortUpload();
          throw failed;
        }
        await s3.send(
          new CompleteMultipartUploadCommand({
            Bucket: bucket,
            Key,
            UploadId: await multipart(),
            MultipartUpload: { Parts: parts },
          }),
        );
        return { key, size };
      },
      async abort() {
        failed ??= new Error('upload aborted');
        if (part) releasePart(part);
        part = undefined;
        await abortUpload();
      },
    };
  }
}
