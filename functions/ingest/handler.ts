/**
 * Ingest function: S3 Object Created events arrive through EventBridge and SQS. Each record is
 * handled on its own; failures are reported per record (ReportBatchItemFailures) so SQS retries
 * only those and redrives poison messages to the DLQ.
 */
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { DynamoDbUploadLog } from '#adapters/dynamodb-upload-log.ts';
import { parseObjectCreated } from '#core/s3-event.ts';
import { makeDocumentClient } from '../commons/clients.ts';
import { requireEnv } from '../commons/env.ts';
import { logger } from '../commons/powertools.ts';
import { recordArrival } from './record-arrival.ts';

const deps = {
  uploads: new DynamoDbUploadLog(makeDocumentClient(), requireEnv('CATALOG_TABLE')),
  bucket: requireEnv('SAFES_BUCKET'),
};
const processor = new BatchProcessor(EventType.SQS);

async function handleRecord(record: SQSRecord): Promise<void> {
  try {
    const event = parseObjectCreated(record.body, `SQS message ${record.messageId}`);
    const result = await recordArrival(deps, event);
    logger.info('object arrival', { key: event.detail.object.key, ...result });
  } catch (error) {
    logger.error('record failed; SQS will retry it, then redrive it to the DLQ', {
      messageId: record.messageId,
      receiveCount: record.attributes.ApproximateReceiveCount,
      error,
    });
    throw error;
  }
}

export const handler = middy(
  async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> =>
    processPartialResponse(event, handleRecord, processor, { context }),
).use(injectLambdaContext(logger));
