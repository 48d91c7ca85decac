/** SDK clients of the harness, all pointed at the profile's endpoint with test credentials. */
import { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { SSMClient } from '@aws-sdk/client-ssm';
import type { CloudProfile } from './profile.ts';

export const TEST_CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' } as const;

export interface CloudClients {
  readonly cfn: CloudFormationClient;
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  readonly ddb: DynamoDBClient;
  readonly lambda: LambdaClient;
  readonly ssm: SSMClient;
  readonly cloudwatch: CloudWatchClient;
}

export function cloudClients(p: CloudProfile): CloudClients {
  const base = { endpoint: p.endpoint, region: p.region, credentials: TEST_CREDENTIALS, maxAttempts: 3 };
  return {
    cfn: new CloudFormationClient(base),
    s3: new S3Client({ ...base, forcePathStyle: true }),
    sqs: new SQSClient({ ...base, useQueueUrlAsEndpoint: false }),
    ddb: new DynamoDBClient(base),
    lambda: new LambdaClient(base),
    ssm: new SSMClient(base),
    cloudwatch: new CloudWatchClient(base),
  };
}

/** The environment a process (or a function under the runner) needs to reach the same cloud. */
export function cloudEnv(p: CloudProfile): Record<string, string> {
  return {
    AWS_ENDPOINT_URL: p.endpoint,
    AWS_REGION: p.region,
    AWS_DEFAULT_REGION: p.region,
    AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey,
    CDP_S3_FORCE_PATH_STYLE: 'true',
  };
}
