/**
 * Index function: S3 Object Created events arrive through EventBridge and SQS. Each record is
 * handled on its own (index-manifest.ts); failures are reported per record
 * (ReportBatchItemFailures) so SQS retries only those and redrives poison messages to the DLQ.
 * An RP waiting for its parent is such a failure: it is retried, not rejected.
 */
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { DynamoDbCatalog } from '#adapters/dynamodb-catalog.ts';
import { S3ObjectStore } from '#adapters/s3-store.ts';
import { parseObjectCreated } from '#core/s3-event.ts';
import { makeDocumentClient, makeS3Client, makeSqsClient } from '../commons/clients.ts';
import { requireEnv } from '../commons/env.ts';
import { logger, metrics } from '../commons/powertools.ts';
import { sendTasks } from '../commons/queue.ts';
import { compactionDue } from './compaction-trigger.ts';
import { handleArrival, type IndexOutcome, ParentPendingError } from './index-manifest.ts';

const bucket = requireEnv('SAFES_BUCKET');
const s3 = makeS3Client();
const catalog = new DynamoDbCatalog(makeDocumentClient(), requireEnv('CATALOG_TABLE'));
const deps = {
  catalog,
  bucket,
  storeFor: (safe: string) => new S3ObjectStore(s3, bucket, `safes/${safe}`, safe),
  now: () => new Date(),
};
const processor = new BatchProcessor(EventType.SQS);
const compactionQueueUrl = process.env.COMPACTION_QUEUE_URL;
const chainThreshold = Number(process.env.COMPACTION_CHAIN_THRESHOLD ?? '0');
const sqs = makeSqsClient();

/** Queues a compaction when the safe's chain since its last compaction passes the threshold. */
async function maybeCompact(safe: string): Promise<void> {
  if (!compactionQueueUrl || chainThreshold <= 0) return;
  const s = await catalog.getSafe(safe);
  if (!compactionDue(s, chainThreshold)) return;
  await sendTasks(sqs, compactionQueueUrl, [{ action: 'compact', safe }], 'a compaction');
  logger.info('compaction queued: the chain passed the threshold', {
    safe,
    newestRp: s?.newestRp,
    compactedUpTo: s?.compactedUpTo,
    chainThreshold,
  });
}

function report(o: IndexOutcome, catalogWrites?: { requests: number; items: number }): void {
  switch (o.outcome) {
    case 'committed': {
      metrics.addMetric('RecoveryPointsCommitted', MetricUnit.Count, 1);
      const lag = metrics.singleMetric();
      lag.addDimension('Safe', o.safe);
      lag.addMetric('ReplicationLagSeconds', MetricUnit.Seconds, o.lagSeconds);
      logger.info('recovery point committed', { ...o, children: undefined, catalogWrites });
      for (const c of o.children) report(c);
      break;
    }
    case 'expired':
      logger.info('recovery point merged away by a compaction before it was indexed: recorded expired', {
        ...o,
        children: undefined,
      });
      for (const c of o.children) report(c);
      break;
    case 'quarantined':
      metrics.addMetric('UploadsQuarantined', MetricUnit.Count, 1);
      logger.warn('upload quarantined', o);
      break;
    default:
      logger.info('object arrival', o);
  }
}

async function handleRecord(record: SQSRecord): Promise<void> {
  const before = { ...catalog.writes };
  try {
    const event = parseObjectCreated(record.body, `SQS message ${record.messageId}`);
    const outcome = await handleArrival(deps, event);
    report(outcome, {
      requests: catalog.writes.requests - before.requests,
      items: catalog.writes.items - before.items,
    });
    if (outcome.outcome === 'committed') await maybeCompact(outcome.safe);
  } catch (error) {
    if (error instanceof ParentPendingError) {
      metrics.addMetric('RecoveryPointsWaiting', MetricUnit.Count, 1);
      logger.info('recovery point waits for its parent; SQS will retry it', { message: error.message });
    } else {
      logger.error('record failed; SQS will retry it, then redrive it to the DLQ', {
        messageId: record.messageId,
        receiveCount: record.attributes.ApproximateReceiveCount,
        error,
      });
    }
    throw error;
  }
}

export const handler = middy(
  async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> =>
    // In order: a parent listed before its child in one batch commits first, and the catalog
    // write counts logged per record are exact.
    processPartialResponse(event, handleRecord, processor, { context, processInParallel: false }),
)
  .use(injectLambdaContext(logger))
  .use(logMetrics(metrics));
