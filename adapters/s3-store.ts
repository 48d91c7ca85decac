/**
 * ObjectStore on an S3 prefix. The safe at `s3://bucket/safes/db1` holds the key
 * `safes/db1/<rest>` at `safes/db1/<rest>`; another prefix maps the same way. Uploads carry CRC32C
 * checksums so S3 verifies them; large objects go through lib-storage's parallel multipart Upload.
 */
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  NotFound,
  PutObjectCommand,
  type S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { NotFoundError } from '#core/errors.ts';
import { safePrefix } from '#core/keys.ts';
import type { ObjectInfo, ObjectStore, ObjectWriter } from '#core/ports/object-store.ts';

export interface S3StoreOptions {
  /** Multipart part size. @default 8 MiB */
  readonly partSize?: number;
  /** Parts uploaded in parallel per object. @default 4 */
  readonly queueSize?: number;
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

  /** `prefix` is where the safe lives in the bucket (usually `safes/<safe>`). */
  constructor(s3: S3Client, bucket: string, prefix: string, safe: string, opts: S3StoreOptions = {}) {
    this.s3 = s3;
    this.bucket = bucket;
    this.safePrefix = safePrefix(safe);
    this.base = prefix.replace(/\/*$/, '/');
    this.location = `s3://${bucket}/${this.base.slice(0, -1)}`;
    this.opts = { partSize: opts.partSize ?? 8 * 1024 * 1024, queueSize: opts.queueSize ?? 4 };
  }

  private objectKey(key: string): string {
    if (!key.startsWith(this.safePrefix)) throw new Error(`key ${key} is not in safe ${this.safePrefix}`);
    return this.base + key.slice(this.safePrefix.length);
  }

  private safeKey(objectKey: string): string {
    return this.safePrefix + objectKey.slice(this.base.length);
  }

  private async getBody(key: string, range?: string): Promise<Buffer> {
    try {
      const r = await this.s3.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key), Range: range }),
      );
      return Buffer.from(await r.Body!.transformToByteArray());
    } catch (e) {
      if (notFound(e)) throw new NotFoundError(`object ${key}`, { key, path: this.location });
      throw e;
    }
  }

  get(key: string): Promise<Buffer> {
    return this.getBody(key);
  }

  async getRange(key: string, offset: number, length: number): Promise<Buffer> {
    const b = await this.getBody(key, `bytes=${offset}-${offset + length - 1}`);
    if (b.length !== length) throw new Error(`${key}: range ${offset}+${length} returned ${b.length} bytes`);
    return b;
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const r = await this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
      return { key, size: r.ContentLength ?? 0 };
    } catch (e) {
      if (notFound(e)) return undefined;
      throw e;
    }
  }

  async put(key: string, body: Uint8Array): Promise<void> {
    await this.s3.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: this.objectKey(key),
        Body: body,
        ChecksumAlgorithm: 'CRC32C',
      }),
    );
  }

  async putIfAbsent(key: string, body: Uint8Array): Promise<boolean> {
    try {
      await this.s3.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.objectKey(key),
          Body: body,
          IfNoneMatch: '*',
          ChecksumAlgorithm: 'CRC32C',
        }),
      );
      return true;
    } catch (e) {
      const status = (e as S3ServiceException).$metadata?.httpStatusCode;
      if (status === 412 || status === 409) return false;
      throw e;
    }
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
      for (const o of r.Contents ?? []) out.push({ key: this.safeKey(o.Key!), size: o.Size ?? 0 });
      token = r.NextContinuationToken;
    } while (token);
    return out;
  }

  openWriter(key: string): ObjectWriter {
    const body = new PassThrough({ highWaterMark: 1024 * 1024 });
    let size = 0;
    const upload = new Upload({
      client: this.s3,
      params: { Bucket: this.bucket, Key: this.objectKey(key), Body: body, ChecksumAlgorithm: 'CRC32C' },
      partSize: this.opts.partSize,
      queueSize: this.opts.queueSize,
      leavePartsOnError: false,
    });
    const done = upload.done();
    done.catch(() => undefined);
    return {
      async write(chunks) {
        for (const chunk of Array.isArray(chunks) ? chunks : [chunks]) {
          size += chunk.length;
          // a copy: the stream keeps it after write resolves, and the caller may reuse its buffer
          // bounded memory: wait for lib-storage to take what is buffered (or for the upload to fail)
          if (!body.write(Buffer.from(chunk))) await Promise.race([once(body, 'drain'), done]);
        }
      },
      async finish() {
        body.end();
        await done;
        return { key, size };
      },
      async abort() {
        await upload.abort().catch(() => undefined);
        body.destroy();
      },
    };
  }
}
