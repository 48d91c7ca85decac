/**
 * The agent's one place for AWS clients: region, credentials and endpoint come from the standard
 * SDK settings (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL_S3 …). Requests time out instead of
 * hanging on a stalled connection; the SDK retries with backoff. Upload checksums (CRC32C) use
 * the agent's faster implementation.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { Crc32c } from './crc32c.ts';

export function makeS3Client(env: NodeJS.ProcessEnv = process.env): S3Client {
  const endpoint = env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL;
  return new S3Client({
    region: env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1',
    forcePathStyle: env.CDP_S3_FORCE_PATH_STYLE === 'true' || endpoint !== undefined,
    maxAttempts: 6,
    requestHandler: new NodeHttpHandler({ connectionTimeout: 10_000, requestTimeout: 120_000 }),
    checksumAlgorithms: { CRC32C: Crc32c },
  });
}
