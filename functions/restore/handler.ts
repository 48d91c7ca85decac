/**
 * Restore function, invoked on demand (lambda:InvokeFunction; `cdp-agent restore --remote`):
 * returns one page of a restore plan with presigned segment URLs (plan-restore.ts). Bad requests
 * and RPs that are not committed get an error naming what was wrong.
 */

import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import middy from '@middy/core';
import { DynamoDbCatalog } from '#adapters/dynamodb-catalog.ts';
import { S3ObjectStore } from '#adapters/s3-store.ts';
import { parseRestoreRequest } from '#core/restore-api.ts';
import type { RestorePlan } from '#core/restore-plan.ts';
import { makeDocumentClient, makeS3Client } from '../commons/clients.ts';
import { requireEnv } from '../commons/env.ts';
import { logger } from '../commons/powertools.ts';
import { planRestore } from './plan-restore.ts';

const bucket = requireEnv('SAFES_BUCKET');
const ttlSeconds = Number(requireEnv('URL_TTL_SECONDS'));
const s3 = makeS3Client();
const deps = {
  catalog: new DynamoDbCatalog(makeDocumentClient(), requireEnv('CATALOG_TABLE')),
  storeFor: (safe: string) => new S3ObjectStore(s3, bucket, `safes/${safe}`, safe),
  presign: async (key: string) => ({
    url: await getSignedUrl(s3, new GetObjectCommand({ Bucket: bucket, Key: key }), {
      expiresIn: ttlSeconds,
    }),
    expiresAt: new Date(Date.now() + ttlSeconds * 1000).toISOString(),
  }),
};

export const handler = middy(async (event: unknown): Promise<RestorePlan> => {
  const req = parseRestoreRequest(event);
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
