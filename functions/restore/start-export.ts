/**
 * Use case: start an export for failover: materialize a committed RP of a device as a raw image
 * object (`exports/<safe>/<device>/rp-<n>-<id>.img`). Starts a multipart upload, records the export,
 * and queues one task per part; the export function produces the parts in parallel and the last
 * one completes the upload. Encrypted safes cannot be exported here: the data key never leaves
 * the agent (restore with `cdp-agent restore` instead).
 */
import { randomUUID } from 'node:crypto';
import { CdpError } from '#core/errors.ts';
import { partGeometry } from '#core/export-geometry.ts';
import type { Catalog } from '#core/ports/catalog.ts';
import type { ExportLog, ExportRecord } from '#core/ports/export-log.ts';
import type { ObjectStore } from '#core/ports/object-store.ts';
import { SafeReader } from '#core/safe-reader.ts';
import { committedRp } from './plan-restore.ts';

export interface StartExportDeps {
  readonly catalog: Catalog;
  readonly exports: ExportLog;
  storeFor(safe: string): ObjectStore;
  createUpload(key: string): Promise<string>;
  queueParts(tasks: { safe: string; exportId: string; part: number }[]): Promise<void>;
  now(): Date;
}

export interface ExportRequest {
  readonly safe: string;
  readonly device: string;
  readonly rp: number | 'latest' | string;
  readonly partBytes?: number;
}

export async function startExport(deps: StartExportDeps, req: ExportRequest): Promise<ExportRecord> {
  const rp = await committedRp(deps.catalog, req.safe, req.rp);
  const reader = new SafeReader(deps.storeFor(req.safe), req.safe);
  if ((await reader.config())?.encryption) {
    throw new CdpError(
      'E_ENCRYPTED',
      `safe ${req.safe} is encrypted: an export needs its data key, which never leaves the agent`,
      { safe: req.safe },
      'restore with cdp-agent restore --remote on a host that holds the key',
    );
  }
  const resolved = await reader.resolve(rp, req.device);
  const g = partGeometry(resolved.deviceSize, resolved.blockSize, req.partBytes);
  const exportId = randomUUID();
  const key = `exports/${req.safe}/${req.device}/rp-${rp}-${exportId}.img`;
  const uploadId = await deps.createUpload(key);
  const record: ExportRecord = {
    safe: req.safe,
    exportId,
    device: req.device,
    rp,
    key,
    uploadId,
    parts: g.parts,
    partBytes: g.partBytes,
    deviceSize: resolved.deviceSize,
    state: 'running',
    startedAt: deps.now().toISOString(),
  };
  await deps.exports.startExport(record);
  await deps.queueParts(
    Array.from({ length: g.parts }, (_, i) => ({ safe: req.safe, exportId, part: i + 1 })),
  );
  return record;
}
