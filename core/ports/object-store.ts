/**
 * Port: where a Disk Safe's objects live (a local directory or an S3 prefix). Keys are the full
 * layout keys of core/keys.ts; an adapter maps them to its location.
 *
 * Contract (test/contract/object-store.contract.ts runs it against every adapter):
 * - `get`, `getRange`: NotFoundError when the key does not exist; `getRange` past the end is an error.
 *   `getRange` with `into` (at least `length` bytes) reads into it and returns a view of it, so a
 *   reader that reuses its buffers allocates nothing per read.
 * - `getTail`: the object's last `length` bytes (all of it when shorter) and its size, in one
 *   request (a segment's trailer and index without a HEAD first); NotFoundError when missing.
 * - `head`: undefined when the key does not exist. `list` and `head` give each object's modification
 *   time by the store's own clock (S3 LastModified, a file's mtime), which lock staleness is judged
 *   by, and `head` a version (an ETag, or a file's identity) for `restamp`.
 * - `restamp`: re-stamps an existing object's modification time with the store's clock (writes
 *   `body`, which must be its bytes, over it) only while it still exists and still holds exactly
 *   `body` (`version`, from `head` or an earlier restamp, saves a read while it still matches);
 *   resolves the new version, or undefined (changing nothing) when the object is gone or holds
 *   other bytes. Never recreates a deleted object. A lock's holders refresh it so.
 * - `put`: durable when it resolves; replaces an existing object.
 * - `putIfAbsent`: atomic create; resolves false, changing nothing, when the key already exists.
 * - `list`: every key under the prefix, in key (byte) order.
 * - `openWriter`: streams one large object; it becomes visible only when `finish` resolves
 *   (durable), never partially; `abort` leaves nothing visible.
 * - `delete`: removes the object; deleting a missing key is not an error. Only garbage collection
 *   (core/compaction) deletes, and only objects no committed view references.
 * - `presignGet` (stores reachable over HTTP): a URL that GETs the key (with any `Range`) for
 *   `seconds`, without further credentials; computed locally, no request is made. A missing key
 *   answers 404 when the URL is used.
 * - `cleanTemporaries`: removes what writers that are gone left behind (a killed directory writer's
 *   temporary files, S3 multipart uploads never completed): those started before `before`, and in a
 *   directory those of processes of this boot that no longer run. Resolves how many it removed.
 */
export interface ObjectInfo {
  readonly key: string;
  readonly size: number;
  /** When the object was last written or re-stamped, by the store's clock. */
  readonly modified?: Date;
  /** `head` only: what `restamp` checks (S3 ETag; a file's inode). */
  readonly version?: string;
}

export interface ObjectTail {
  readonly bytes: Buffer;
  /** The whole object's size. */
  readonly size: number;
}

export interface ObjectWriter {
  /** Appends every byte of `chunks` (one buffer or several, written in order). */
  write(chunks: Uint8Array | readonly Uint8Array[]): Promise<void>;
  finish(): Promise<ObjectInfo>;
  abort(): Promise<void>;
}

export interface ObjectStore {
  /** Where the store is, for messages (`/backups/db1`, `s3://bucket/safes/db1`). */
  readonly location: string;
  get(key: string): Promise<Buffer>;
  getRange(key: string, offset: number, length: number, into?: Uint8Array): Promise<Buffer>;
  getTail(key: string, length: number): Promise<ObjectTail>;
  head(key: string): Promise<ObjectInfo | undefined>;
  put(key: string, body: Uint8Array): Promise<void>;
  putIfAbsent(key: string, body: Uint8Array): Promise<boolean>;
  list(prefix: string): Promise<ObjectInfo[]>;
  openWriter(key: string): ObjectWriter;
  /** The local file holding `key`, for stores of files (a restore's workers read those directly). */
  filePath?(key: string): string;
  /** A presigned GET URL of `key`, for stores reachable over HTTP (a restore's workers fetch it). */
  presignGet?(key: string, seconds: number): Promise<string>;
  delete(key: string): Promise<void>;
  restamp(key: string, body: Uint8Array, version: string): Promise<string | undefined>;
  cleanTemporaries(before: Date): Promise<number>;
}
