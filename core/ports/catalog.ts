/**
 * Port: the offsite catalog (docs/FORMAT.md "Catalog"): which safes exist, their recovery points
 * and states, the segments each RP added, quarantined uploads, and each safe's RPO target.
 *
 * Contract (test/contract/catalog.contract.ts runs it against every adapter):
 * - `commitRp` is atomic and idempotent: it records the RP as committed and advances the safe's
 *   newest RP in one step; committing an RP that is already committed changes nothing and
 *   returns 'already-committed'. It never turns a committed RP into anything else, and never
 *   commits an expired RP again (that too returns 'already-committed').
 * - `putSegments` is idempotent and never overwrites a segment already recorded.
 * - `quarantineUpload` records the key with its reason and, for a manifest, marks the RP
 *   quarantined unless it is already committed. It never deletes anything.
 * - `markWaiting` records that an RP waits for its parent; `waitingChildren` finds it again.
 * - `listRps` is in RP order; `rpAtOrBefore` gives the newest committed RP created at or before a time.
 * - Writes per RP are O(segments), never O(blocks).
 * - `recordGeneration` is idempotent: expired RPs (committed or waiting) leave the committed set
 *   (and the by-time index) once; the safe's generation only moves forward; segments it condemned are marked with
 *   the generation, segments it revived are unmarked. A failure other than "already expired"
 *   (throttling, anything else) is thrown, never taken for done.
 * - `expireRp` records that a generation merged one RP away whatever the catalog knew of it: a
 *   committed RP leaves the committed set as in `recordGeneration`; one not committed yet (indexed
 *   after the compaction, or waiting for its parent) is recorded expired and no longer waits. A
 *   quarantined RP stays quarantined. Idempotent.
 * - An expired RP is never recorded committed, waiting or quarantined again.
 * - `markSegmentsDeleted` records that garbage collection deleted segments (idempotent).
 * The compaction lock is not the catalog's: it lives in the safe (core/locks.ts).
 */
export type RpState = 'committed' | 'waiting' | 'quarantined' | 'expired';

export interface RpDeviceRecord {
  readonly id: string;
  readonly sizeBytes: number;
  readonly blockSize: number;
  readonly blockMapKey: string;
  readonly blockMapBytes: number;
  readonly extents: number;
  readonly changedBlocks: number;
  readonly storedBytes: number;
}

export interface RpRecord {
  readonly safe: string;
  readonly rp: number;
  readonly state: RpState;
  readonly parent: number | null;
  /** When the agent captured the RP (manifest createdAt), ISO-8601. */
  readonly createdAt?: string;
  /** When the catalog recorded this state, ISO-8601. */
  readonly updatedAt: string;
  readonly manifestKey: string;
  readonly manifestSha256?: string;
  readonly agent?: { readonly id: string; readonly version: string; readonly host: string };
  readonly encrypted?: boolean;
  readonly devices?: readonly RpDeviceRecord[];
  readonly segmentCount?: number;
  readonly changedBytes?: number;
  readonly storedBytes?: number;
  /** Why the RP is waiting or quarantined. */
  readonly reason?: string;
}

export interface SegmentRecord {
  readonly safe: string;
  readonly id: string;
  readonly key: string;
  readonly bytes: number;
  readonly frames: number;
  /** The RP whose manifest first listed the segment. */
  readonly firstRp: number;
  /** Bytes of frames still referenced by a retained RP; ingest sets it to `bytes`, compaction maintains it. */
  readonly liveBytes: number;
  /** While the segment is garbage: the generation that condemned it. */
  readonly condemnedIn?: number;
  /** When garbage collection deleted it, ISO-8601. */
  readonly deletedAt?: string;
}

export interface SafeRecord {
  readonly safe: string;
  readonly newestRp?: number;
  /** Capture time of the newest committed RP, ISO-8601. */
  readonly newestRpCreatedAt?: string;
  readonly committedRps: number;
  readonly storedBytes: number;
  readonly quarantined: number;
  /** When the catalog first heard of the safe, ISO-8601. */
  readonly firstSeenAt: string;
  /** The RPO target; absent means the stack default. */
  readonly rpoTargetSeconds?: number;
  /** The newest compaction generation recorded, the newest RP it covers, and the retention it applied. */
  readonly generation?: number;
  readonly compactedUpTo?: number;
  readonly retention?: RetentionRecord;
}

/** A retention policy as the catalog shows it (the safe's policy.json, or the stack default). */
export interface RetentionRecord {
  readonly last: number;
  readonly hourly: number;
  readonly daily: number;
  readonly weekly: number;
  readonly monthly: number;
  readonly locked: readonly number[];
}

/** What a committed compaction generation changed, for the catalog. */
export interface GenerationRecord {
  readonly safe: string;
  readonly generation: number;
  readonly upTo: number;
  readonly expired: readonly number[];
  /** Segments the compaction wrote. */
  readonly written: readonly SegmentRecord[];
  /** Segments it listed as garbage, with the generation that condemned each. */
  readonly condemned: readonly { readonly id: string; readonly generation: number }[];
  /** Segments garbage before that a retained RP references again. */
  readonly revived: readonly string[];
  readonly retention: RetentionRecord;
  readonly at: string;
}

export interface QuarantineRecord {
  readonly key: string;
  readonly reason: string;
  readonly size: number;
  /** Event time of the upload, ISO-8601. */
  readonly createdAt: string;
  readonly quarantinedAt: string;
  readonly safe?: string;
  readonly rp?: number;
}

export interface WaitingChild {
  readonly safe: string;
  readonly rp: number;
  readonly parent: number;
  readonly manifestKey: string;
}

export type CommitOutcome = 'committed' | 'already-committed';

/** An RP a compaction merged away, as `expireRp` records it. */
export interface ExpiredRpRecord {
  readonly safe: string;
  readonly rp: number;
  readonly parent: number | null;
  /** The generation whose view leaves it out. */
  readonly generation: number;
  readonly manifestKey: string;
  /** Capture time (manifest createdAt), ISO-8601, when known. */
  readonly createdAt?: string;
  /** When the catalog records it, ISO-8601. */
  readonly at: string;
}

export interface Catalog {
  getSafe(safe: string): Promise<SafeRecord | undefined>;
  listSafes(): Promise<SafeRecord[]>;
  setRpoTarget(safe: string, seconds: number, now: string): Promise<void>;

  getRp(safe: string, rp: number): Promise<RpRecord | undefined>;
  listRps(safe: string, opts?: { readonly fromRp?: number; readonly limit?: number }): Promise<RpRecord[]>;
  rpAtOrBefore(safe: string, time: string): Promise<RpRecord | undefined>;

  getSegments(safe: string, ids: readonly string[]): Promise<Map<string, SegmentRecord>>;
  putSegments(segments: readonly SegmentRecord[]): Promise<void>;

  commitRp(rp: RpRecord & { readonly state: 'committed' }): Promise<CommitOutcome>;
  markWaiting(rp: RpRecord & { readonly state: 'waiting' }): Promise<void>;
  waitingChildren(safe: string, parent: number): Promise<WaitingChild[]>;

  quarantineUpload(q: QuarantineRecord): Promise<void>;
  listQuarantined(safe?: string): Promise<QuarantineRecord[]>;

  recordGeneration(g: GenerationRecord): Promise<void>;
  expireRp(e: ExpiredRpRecord): Promise<void>;
  markSegmentsDeleted(safe: string, ids: readonly string[], at: string): Promise<void>;
}

/** Name of the DynamoDB GSI over committed RPs by capture time (lib/ declares it, adapters/ query it). */
export const CATALOG_INDEX_BY_TIME = 'byTime';
