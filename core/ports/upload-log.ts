/**
 * Port: the catalog's record of objects that arrived in the safes bucket.
 *
 * Contract (every adapter, checked by test/contract/upload-log.contract.ts):
 * - `recordObject` is idempotent: recording the same object (key + etag) twice leaves one entry.
 * - `quarantine` never deletes anything; it records the key with the reason and is idempotent.
 * - `listObjects` returns the entries of one safe in key order; an unknown safe gives [].
 */
export interface ArrivedObject {
  readonly safe: string;
  readonly key: string;
  readonly kind: string;
  readonly size: number;
  readonly etag: string;
  /** ISO-8601 time S3 reported the object created. */
  readonly createdAt: string;
}

export interface QuarantinedObject {
  readonly key: string;
  readonly reason: string;
  readonly size: number;
  readonly createdAt: string;
}

export interface UploadLog {
  recordObject(o: ArrivedObject): Promise<void>;
  quarantine(q: QuarantinedObject): Promise<void>;
  listObjects(safe: string): Promise<ArrivedObject[]>;
  listQuarantined(): Promise<QuarantinedObject[]>;
}
