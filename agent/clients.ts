/**
 * The agent's one place for AWS clients: region, credentials and endpoint come from the standard
 * SDK settings (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL_S3 …). Requests time out instead of
 * hanging on a stalled connection; the SDK retries with backoff. Uploads carry SHA-256 checksums
 * that the store computes (adapters/s3-store.ts).
 */
import { S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { Catalog } from '#core/ports/catalog.ts';

export function makeS3Client(env: NodeJS.ProcessEnv = process.env): S3Client {
  const endpoint = env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  return new S3Client({
    region: env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1',
    forcePathStyle: env.CDP_S3_FORCE_PATH_STYLE === 'true' || endpoint !== undefined,
    maxAttempts: 6,
    requestHandler: new NodeHttpHandler({ connectionTimeout: 10_000, requestTimeout: 120_000 }),
  });
}

/** The offsite catalog (`rpo`): DynamoDB with the same settings; the client is loaded only when asked for. */
export async function openCatalog(table: string): Promise<Catalog> {
  const [{ DynamoDBClient }, { DynamoDBDocumentClient }, { DynamoDbCatalog }] = await Promise.all([
    import('@aws-sdk/client-dynamodb'),
    import('@aws-sdk/lib-dynamodb'),
    import('#adapters/dynamodb-catalog.ts'),
  ]);
  return new DynamoDbCatalog(DynamoDBDocumentClient.from(new DynamoDBClient({ maxAttempts: 5 })), table);
}
