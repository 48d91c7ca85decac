/**
 * The one place the functions build AWS clients. Endpoint and credentials come from the
 * standard SDK settings (AWS_ENDPOINT_URL*, AWS_REGION, the Lambda role); path-style S3
 * addressing is turned on for S3-compatible emulators with CDP_S3_FORCE_PATH_STYLE=true.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';

const common = { maxAttempts: 5 } as const;

export function makeDocumentClient(): DynamoDBDocumentClient {
  return DynamoDBDocumentClient.from(new DynamoDBClient(common), {
    marshallOptions: { removeUndefinedValues: true },
  });
}

export function makeS3Client(): S3Client {
  return new S3Client({ ...common, forcePathStyle: process.env.CDP_S3_FORCE_PATH_STYLE === 'true' });
}

/** SQS requests go to the configured endpoint, not to the host in the queue URL (emulators). */
export function makeSqsClient(): SQSClient {
  return new SQSClient({ ...common, useQueueUrlAsEndpoint: false });
}
