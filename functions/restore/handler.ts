/**
 * Restore function, invoked on demand (lambda:InvokeFunction; `cdp-agent restore --remote`):
 * returns one page of a restore plan with presigned segment URLs (plan-restore.ts), or starts an
 * export of an RP as a raw image object (start-export.ts) and reports its progress. Bad requests
 * and RPs that are not committed get an error naming what was wrong.
 */

import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { CreateMultipartUploadCommand, GetObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import middy from '@middy/core';
import { DynamoDbCatalog } from '#adapters/dynamodb-catalog.ts';
import { DynamoDbExportLog } from '#adapters/dynamodb-export-log.ts';
import { S3ObjectStore } from '#adapters/s3-store.ts';
import { NotFoundError } from '#core/errors.ts';
import type { ExportRecord } from '#core/ports/export-log.ts';
import { parseRestoreRequest } from '#core/restore-api.ts';
import type { RestorePlan } from '#core/restore-plan.ts';
import { makeDocumentClient, makeS3Client, makeSqsClient } from '../commons/clients.ts';
import { requireEnv } from '../commons/env.ts';
import { logger } from '../commons/powertools.ts';
import { sendTasks } from '../commons/queue.ts';
import { planRestore } from './plan-restore.ts';
import { startExport } from './start-export.ts';

const bucket = requireEnv('SAFES_BUCKET');
const ttlSeconds = Number(requireEnv('URL_TTL_SECONDS'));
const s3 = makeS3Client();
const sqs = makeSqsClient();
const exportQueueUrl = requireEnv('EXPORT_QUEUE_URL');
const doc = makeDocumentClient();
const table = requireEnv('CATALOG_TABLE');
const exports = new DynamoDbExportLog(doc, table);
const deps = {
  catalog: new DynamoDbCatalog(doc, table),
  exports,
  createUpload: async (key: string) => {
    const r = await s3.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ChecksumAlgorithm: 'CRC32C' }),
    );
    return r.UploadId!;
  },
  queueParts: (tasks: { safe: string; exportId: string; part: number }[]) =>
    sendTasks(sqs, exportQueueUrl, tasks, 'export parts'),
  now: () => new Date(),
  storeFor: (safe: string) => new S3ObjectStore(s3, bucket, `safes/${safe}`, safe),
  presign: async (key: string) => ({
    url: await getSignedUrl(s3, new GetObjectCommand({ Bucket: bucket, Key: key }), {
      expiresIn: ttlSeconds,
    }),
    expiresAt: new Date(Date.now() + ttlSeconds * 1000).toISOString(),
  }),
};

export const handler = middy(async (event: unknown): Promise<RestorePlan | ExportRecord> => {
  const req = parseRestoreRequest(event);
  if (req.action === 'export') {
    const e = await startExport(deps, req);
    logger.info('export started', { ...e });
    return e;
  }
  if (req.action === 'export-status') {
    const e = await exports.getExport(req.safe, req.exportId);
    if (!e) throw new NotFoundError(`export ${req.exportId} of safe ${req.safe}`, { safe: req.safe });
    return e;
  }
  const plan = await planRestore(deps, req);
  logger.info('restore plan', {
    safe: plan.safe,
    device: plan.device,
    rp: plan.rp,
    fromBlock: plan.fromBlock,
    nextBlock: plan.nextBlock,
    ranges: plan.ranges.length,
    rangeBytes: plan.stats.rangeBytes,
  });
  return plan;
}).use(injectLambdaContext(logger));
