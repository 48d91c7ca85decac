/**
 * Compaction function. Two event sources:
 * - the EventBridge schedule: queues one compact task per safe in the catalog;
 * - the compaction queue (batch size 1): compact, liveness, select, rewrite, maps and finish tasks
 *   (compaction-tasks.ts),
 *   sent by the schedule, by the ingest function when a safe's chain passes the threshold, and by
 *   compaction itself when it fans out.
 */
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { z } from 'zod';
import { DynamoDbCatalog } from '#adapters/dynamodb-catalog.ts';
import { S3ObjectStore } from '#adapters/s3-store.ts';
import { BadInputError } from '#core/errors.ts';
import { retentionPolicySchema } from '#core/format/generation.ts';
import { RUN_ID, SAFE_ID } from '#core/keys.ts';
import { makeDocumentClient, makeS3Client, makeSqsClient } from '../commons/clients.ts';
import { requireEnv } from '../commons/env.ts';
import { logger, metrics } from '../commons/powertools.ts';
import { sendTasks } from '../commons/queue.ts';
import { type CompactionTask, handleCompactionTask, scheduleAll } from './compaction-tasks.ts';

const bucket = requireEnv('SAFES_BUCKET');
const queueUrl = requireEnv('COMPACTION_QUEUE_URL');
const s3 = makeS3Client();
const sqs = makeSqsClient();
const deps = {
  catalog: new DynamoDbCatalog(makeDocumentClient(), requireEnv('CATALOG_TABLE')),
  storeFor: (safe: string) => new S3ObjectStore(s3, bucket, `safes/${safe}`, safe),
  send: (tasks: readonly CompactionTask[]) => sendTasks(sqs, queueUrl, tasks, 'compaction tasks'),
  defaultPolicy: retentionPolicySchema.parse(JSON.parse(requireEnv('DEFAULT_RETENTION'))),
  graceMs: Number(requireEnv('GRACE_SECONDS')) * 1000,
  maxDeltas: Number(requireEnv('MAX_DELTAS')),
  inline: Number(process.env.INLINE_UNITS ?? '1'),
  owner: `compaction function ${process.env.AWS_LAMBDA_FUNCTION_NAME ?? 'compact'}`,
  segmentBytes: process.env.SEGMENT_BYTES ? Number(process.env.SEGMENT_BYTES) : undefined,
  shardBlocks: process.env.SHARD_BLOCKS ? Number(process.env.SHARD_BLOCKS) : undefined,
  now: () => new Date(),
  log: (msg: string) => logger.info(msg),
};

const safeId = z.string().regex(SAFE_ID);
const generation = z.number().int().positive();
const attempt = z.string().regex(RUN_ID);
const index = z.number().int().nonnegative();
const taskSchema = z.discriminatedUnion('action', [
  z.object({ action: z.literal('compact'), safe: safeId }),
  z.object({ action: z.literal('liveness'), safe: safeId, generation, attempt, shard: index }),
  z.object({ action: z.literal('select'), safe: safeId, generation, attempt }),
  z.object({ action: z.literal('rewrite'), safe: safeId, generation, attempt, output: index }),
  z.object({ action: z.literal('maps'), safe: safeId, generation, attempt, shard: index }),
  z.object({ action: z.literal('finish'), safe: safeId, generation, attempt }),
]);
const processor = new BatchProcessor(EventType.SQS);

async function handleRecord(record: SQSRecord): Promise<void> {
  let task: CompactionTask;
  try {
    task = taskSchema.parse(JSON.parse(record.body));
  } catch (e) {
    throw new BadInputError(`compaction task ${record.messageId}`, (e as Error).message);
  }
  const outcome = await handleCompactionTask(deps, task);
  if (outcome.outcome === 'committed') {
    metrics.addMetric('CompactionsCommitted', MetricUnit.Count, 1);
    metrics.addMetric('RecoveryPointsMerged', MetricUnit.Count, outcome.result.expired.length);
    metrics.addMetric('BytesRewritten', MetricUnit.Bytes, outcome.result.bytesRewritten);
  }
  logger.info('compaction task', { task, ...outcome });
}

export const handler = middy(
  async (event: unknown, context: Context): Promise<SQSBatchResponse | { safes: number }> => {
    if (typeof event === 'object' && event !== null && 'Records' in event)
      return processPartialResponse(event as SQSEvent, handleRecord, processor, { context });
    const r = await scheduleAll(deps);
    logger.info('scheduled compaction of every safe', r);
    return r;
  },
)
  .use(injectLambdaContext(logger))
  .use(logMetrics(metrics));
