import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../lib/defaults.ts';
import { OffsiteStack } from '../../lib/offsite-stack.ts';

let template: Template;

/** The IAM policy statements of the role of the function with this Powertools service name. */
function roleStatements(service: string): { Action: string | string[]; Resource: unknown }[] {
  const fns = template.findResources('AWS::Lambda::Function', {
    Properties: { Environment: { Variables: Match.objectLike({ POWERTOOLS_SERVICE_NAME: service }) } },
  });
  const role = Object.values(fns)[0]!.Properties.Role['Fn::GetAtt'][0] as string;
  return Object.values(template.findResources('AWS::IAM::Policy'))
    .filter((p) => (p.Properties.Roles as { Ref: string }[]).some((r) => r.Ref === role))
    .flatMap((p) => p.Properties.PolicyDocument.Statement);
}

const roleActions = (service: string): string[] => roleStatements(service).flatMap((s) => [s.Action].flat());

beforeAll(() => {
  const app = new App();
  template = Template.fromStack(new OffsiteStack(app, 'Test'));
});

describe('OffsiteStack security defaults', () => {
  it('encrypts the safes bucket with the stack KMS key, blocks public access, versions objects', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [
          {
            BucketKeyEnabled: true,
            ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: Match.anyValue() },
          },
        ],
      },
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      VersioningConfiguration: { Status: 'Enabled' },
      OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
    });
  });

  it('aborts incomplete multipart uploads and expires old versions', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: {
        Rules: Match.arrayWith([
          Match.objectLike({ AbortIncompleteMultipartUpload: { DaysAfterInitiation: 2 }, Status: 'Enabled' }),
          Match.objectLike({ NoncurrentVersionExpiration: { NoncurrentDays: 30 }, Status: 'Enabled' }),
        ]),
      },
    });
  });

  it('denies every request that does not use TLS 1.2+', () => {
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Deny',
            Action: 's3:*',
            Principal: { AWS: '*' },
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
          Match.objectLike({
            Effect: 'Deny',
            Condition: { NumericLessThan: { 's3:TlsVersion': 1.2 } },
          }),
        ]),
      },
    });
  });

  it('sends S3 events to EventBridge through the native property, with no custom resource anywhere', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      NotificationConfiguration: { EventBridgeConfiguration: { EventBridgeEnabled: true } },
    });
    const types = Object.values(template.toJSON().Resources as Record<string, { Type: string }>).map(
      (r) => r.Type,
    );
    expect(
      types.filter((t) => t.startsWith('Custom::') || t === 'AWS::CloudFormation::CustomResource'),
    ).toEqual([]);
    // The only invoke permissions are the RPO and compaction schedules' (events.amazonaws.com);
    // S3 notifications add none.
    const permissions = Object.values(template.findResources('AWS::Lambda::Permission'));
    expect(permissions.map((p) => p.Properties.Principal)).toEqual([
      'events.amazonaws.com',
      'events.amazonaws.com',
    ]);
  });

  it('keeps data on stack deletion', () => {
    for (const type of ['AWS::S3::Bucket', 'AWS::DynamoDB::Table', 'AWS::KMS::Key']) {
      template.hasResource(type, { DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
    }
  });

  it('rotates the KMS key', () => {
    template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
  });

  it('builds the catalog on demand with point-in-time recovery, KMS encryption and deletion protection', () => {
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      BillingMode: 'PAY_PER_REQUEST',
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      SSESpecification: { SSEEnabled: true, SSEType: 'KMS' },
      DeletionProtectionEnabled: true,
    });
  });

  it('feeds Object Created events under the safes prefix to an encrypted queue with a DLQ and an alarm', () => {
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.s3'],
        'detail-type': ['Object Created'],
        detail: { bucket: { name: [Match.anyValue()] }, object: { key: [{ prefix: 'safes/' }] } },
      },
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [Match.stringLikeRegexp('IngestQueue'), 'Arn'] } })],
    });
    template.hasResourceProperties('AWS::SQS::Queue', {
      SqsManagedSseEnabled: true,
      VisibilityTimeout: 360,
      RedrivePolicy: { maxReceiveCount: 5, deadLetterTargetArn: Match.anyValue() },
    });
    template.hasResourceProperties('AWS::SQS::Queue', { MessageRetentionPeriod: 1209600 });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Namespace: 'AWS/SQS',
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
    });
    // ingest, export and compaction queues and their DLQs all enforce TLS
    template.resourceCountIs('AWS::SQS::QueuePolicy', 6);
  });

  it('runs functions on Node.js 22 arm64 with JSON logs in a log group with retention', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      LoggingConfig: { LogFormat: 'JSON', LogGroup: Match.anyValue() },
      Environment: { Variables: Match.objectLike({ POWERTOOLS_SERVICE_NAME: 'cdp-ingest' }) },
    });
    template.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 30 });
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      BatchSize: 10,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
  });

  it('gives the ingest function read access to the bucket and write access to the catalog only', () => {
    const actions = roleActions('cdp-ingest');
    expect(actions).toContain('dynamodb:PutItem');
    expect(actions).toContain('s3:GetObject*');
    expect(actions.filter((a) => /^s3:(Put|Delete)/.test(a))).toEqual([]);
  });

  it('compacts on a schedule and from a queue with a DLQ; deletes only under safes/, after a grace longer than restore URLs live', () => {
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: `rate(${DEFAULTS.compactionInterval.toHours()} hours)`,
    });
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      BatchSize: 1,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
    const env = Object.values(template.findResources('AWS::Lambda::Function')).find(
      (f) => f.Properties.Environment?.Variables?.POWERTOOLS_SERVICE_NAME === 'cdp-compaction',
    )!.Properties.Environment.Variables;
    expect(Number(env.GRACE_SECONDS)).toBeGreaterThan(DEFAULTS.restoreUrlTtl.toSeconds());
    expect(Number(env.MAX_DELTAS)).toBe(DEFAULTS.compactionMaxDeltas);
    const deletes = roleStatements('cdp-compaction').filter((st) =>
      [st.Action].flat().some((a) => /^s3:Delete/.test(a)),
    );
    expect(deletes.length).toBeGreaterThan(0);
    for (const st of deletes) expect(JSON.stringify(st.Resource)).toMatch(/\/safes\/\*/);
  });

  it('lets only the restore and export functions write under exports/', () => {
    for (const service of ['cdp-restore', 'cdp-export']) {
      const statements = roleStatements(service).filter((st) =>
        [st.Action].flat().some((a) => /^s3:(Put|Abort)/.test(a)),
      );
      expect(statements.length).toBeGreaterThan(0);
      for (const st of statements) expect(JSON.stringify(st.Resource)).toMatch(/\/exports\/\*/);
      expect(roleActions(service).filter((a) => /^s3:Delete/.test(a))).toEqual([]);
    }
  });

  it('indexes committed RPs by capture time in a sparse GSI', () => {
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      GlobalSecondaryIndexes: [
        {
          IndexName: 'byTime',
          KeySchema: [
            { AttributeName: 'gsi1pk', KeyType: 'HASH' },
            { AttributeName: 'gsi1sk', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'ALL' },
        },
      ],
    });
  });

  it('measures replication lag every minute and alarms past the RPO target or when the monitor is silent', () => {
    template.hasResourceProperties('AWS::Events::Rule', { ScheduleExpression: 'rate(1 minute)' });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          POWERTOOLS_SERVICE_NAME: 'cdp-monitor',
          POWERTOOLS_METRICS_NAMESPACE: 'CdpOffsite',
          DEFAULT_RPO_SECONDS: '3600',
        }),
      },
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'CdpOffsite',
      MetricName: 'SafesOverRpo',
      Dimensions: [{ Name: 'service', Value: 'cdp-monitor' }],
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
      TreatMissingData: 'breaching',
    });
  });

  it('exposes the query function through an IAM-authorized URL, read-only on the catalog', () => {
    template.hasResourceProperties('AWS::Lambda::Url', { AuthType: 'AWS_IAM' });
    const actions = roleActions('cdp-query');
    expect(actions).toContain('dynamodb:Query');
    expect(actions.filter((a) => /Put|Update|Delete|Write/.test(a))).toEqual([]);
  });
});
