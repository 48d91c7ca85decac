/**
 * Port: the progress of exports (an RP materialized as a raw image object for failover), kept in
 * the catalog table. Parts are produced in parallel by separate invocations; the one that records
 * the last part completes the upload.
 *
 * Contract: `recordPart` is idempotent per part number and returns how many distinct parts are
 * recorded; `finish` moves an export to `complete` (or `failed`) once.
 */
export type ExportState = 'running' | 'complete' | 'failed';

export interface ExportRecord {
  readonly safe: string;
  readonly exportId: string;
  readonly device: string;
  readonly rp: number;
  /** Bucket key of the image object. */
  readonly key: string;
  readonly uploadId: string;
  readonly parts: number;
  readonly partBytes: number;
  readonly deviceSize: number;
  readonly state: ExportState;
  readonly startedAt: string;
  readonly finishedAt?: string;
  readonly reason?: string;
  /** ETag of each recorded part, by part number (1-based). */
  readonly etags?: Readonly<Record<string, string>>;
}

export interface ExportLog {
  startExport(e: ExportRecord): Promise<void>;
  getExport(safe: string, exportId: string): Promise<ExportRecord | undefined>;
  /** Records part `part`'s ETag; returns the number of distinct parts recorded so far. */
  recordPart(safe: string, exportId: string, part: number, etag: string): Promise<number>;
  finish(
    safe: string,
    exportId: string,
    state: 'complete' | 'failed',
    at: string,
    reason?: string,
  ): Promise<boolean>;
}
