/**
 * Export function: consumes part tasks from the export queue (one per message; SQS retries a
 * failed part, then its DLQ keeps it) and produces each part of an export (export-part.ts).
 */

import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { CompleteMultipartUploadCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import middy from '@middy/core';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { z } from 'zod';
import { DynamoDbExportLog } from '#adapters/dynamodb-export-log.ts';
import { S3ObjectStore } from '#adapters/s3-store.ts';
import { BadInputError } from '#core/errors.ts';
import { makeDocumentClient, makeS3Client } from '../commons/clients.ts';
import { requireEnv } from '../commons/env.ts';
import { logger } from '../commons/powertools.ts';
import { exportPart } from './export-part.ts';

const bucket = requireEnv('SAFES_BUCKET');
const s3 = makeS3Client();
const deps = {
  exports: new DynamoDbExportLog(makeDocumentClient(), requireEnv('CATALOG_TABLE')),
  storeFor: (safe: string) => new S3ObjectStore(s3, bucket, `safes/${safe}`, safe),
  uploadPart: async (key: string, uploadId: string, part: number, body: Buffer) => {
    const r = await s3.send(
      new UploadPartCommand({
        Bucket: bucket,
        Key: key,
        UploadId: uploadId,
        PartNumber: part,
        Body: body,
        ChecksumAlgorithm: 'CRC32C',
      }),
    );
    return r.ETag!;
  },
  complete: async (key: string, uploadId: string, parts: { part: number; etag: string }[]) => {
    await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        UploadId: uploadId,
        MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.part, ETag: p.etag })) },
      }),
    );
  },
  now: () => new Date(),
};

const taskSchema = z.object({
  safe: z.string().min(1),
  exportId: z.string().uuid(),
  part: z.number().int().positive(),
});
const processor = new BatchProcessor(EventType.SQS);

async function handleRecord(record: SQSRecord): Promise<void> {
  let task: z.infer<typeof taskSchema>;
  try {
    task = taskSchema.parse(JSON.parse(record.body));
  } catch (e) {
    throw new BadInputError(`export task ${record.messageId}`, (e as Error).message);
  }
  const outcome = await exportPart(deps, task);
  logger.info('export part', { ...task, ...outcome });
}

export const handler = middy(
  async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> =>
    processPartialResponse(event, handleRecord, processor, { context }),
).use(injectLambdaContext(logger));
