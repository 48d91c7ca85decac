/**
 * What moto's CloudFormation silently drops, and how to put it back through the service APIs.
 * Table-driven: each row names a resource type and property, says how to check that the deployed
 * resource has it, and how to apply it. After a deploy every row must be in effect
 * (test/integration/deploy.test.ts), so a property the emulator starts dropping shows up there.
 */
import { DescribeAlarmsCommand, PutMetricAlarmCommand } from '@aws-sdk/client-cloudwatch';
import {
  DescribeContinuousBackupsCommand,
  DescribeTableCommand,
  UpdateContinuousBackupsCommand,
  UpdateTableCommand,
} from '@aws-sdk/client-dynamodb';
import { CreateFunctionUrlConfigCommand, GetFunctionUrlConfigCommand } from '@aws-sdk/client-lambda';
import {
  type BucketLifecycleConfiguration,
  GetBucketEncryptionCommand,
  GetBucketLifecycleConfigurationCommand,
  GetBucketNotificationConfigurationCommand,
  GetBucketPolicyCommand,
  GetBucketVersioningCommand,
  GetPublicAccessBlockCommand,
  PutBucketEncryptionCommand,
  PutBucketLifecycleConfigurationCommand,
  PutBucketNotificationConfigurationCommand,
  PutBucketPolicyCommand,
  PutBucketVersioningCommand,
  PutPublicAccessBlockCommand,
} from '@aws-sdk/client-s3';
import { GetQueueAttributesCommand, SetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import type { CloudClients } from './clients.ts';
import { type DeployedStack, resolve } from './intrinsics.ts';

type Props = Record<string, unknown>;

export interface Target {
  readonly logicalId: string;
  /** Physical id of the resource (or, for rows that recreate a whole skipped resource, its name). */
  readonly physicalId: string;
  /** The resource's Properties with intrinsics resolved. */
  readonly props: Props;
}

export interface DroppedProperty {
  readonly resourceType: string;
  /** A top-level property name, or '*' for a resource the emulator skips entirely. */
  readonly property: string;
  /** True when the deployed resource already has what the template says. */
  inEffect(c: CloudClients, t: Target): Promise<boolean>;
  apply(c: CloudClients, t: Target): Promise<void>;
  /**
   * What moto cannot do with this row: `cannot-verify` rows are applied but their read API does not
   * show them (an integration test checks them by effect); `cannot-apply` rows would break the
   * emulator and are asserted on the synthesized template instead.
   */
  readonly motoLimitation?: { readonly kind: 'cannot-verify' | 'cannot-apply'; readonly reason: string };
}

async function orUndefined<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch {
    return undefined;
  }
}

function json(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

type LifecycleRule = NonNullable<BucketLifecycleConfiguration['Rules']>[number];

function lifecycleRules(props: Props): LifecycleRule[] {
  const rules = (props.LifecycleConfiguration as { Rules: Props[] }).Rules;
  return rules.map((r) => {
    const rule: LifecycleRule = { ID: String(r.Id), Status: r.Status as 'Enabled', Filter: { Prefix: '' } };
    if (r.AbortIncompleteMultipartUpload) {
      rule.AbortIncompleteMultipartUpload = {
        DaysAfterInitiation: Number((r.AbortIncompleteMultipartUpload as Props).DaysAfterInitiation),
      };
    }
    if (r.NoncurrentVersionExpiration) {
      rule.NoncurrentVersionExpiration = {
        NoncurrentDays: Number((r.NoncurrentVersionExpiration as Props).NoncurrentDays),
      };
    }
    if (r.ExpirationInDays) rule.Expiration = { Days: Number(r.ExpirationInDays) };
    return rule;
  });
}

export const DROPPED_PROPERTIES: readonly DroppedProperty[] = [
  {
    resourceType: 'AWS::S3::Bucket',
    property: 'VersioningConfiguration',
    async inEffect(c, t) {
      const r = await c.s3.send(new GetBucketVersioningCommand({ Bucket: t.physicalId }));
      return r.Status === (t.props.VersioningConfiguration as Props).Status;
    },
    async apply(c, t) {
      const Status = (t.props.VersioningConfiguration as Props).Status as 'Enabled' | 'Suspended';
      await c.s3.send(
        new PutBucketVersioningCommand({ Bucket: t.physicalId, VersioningConfiguration: { Status } }),
      );
    },
  },
  {
    resourceType: 'AWS::S3::Bucket',
    property: 'LifecycleConfiguration',
    async inEffect(c, t) {
      const r = await orUndefined(
        c.s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: t.physicalId })),
      );
      const have = (r?.Rules ?? []).map((x) => x.ID).sort();
      const want = lifecycleRules(t.props)
        .map((x) => x.ID)
        .sort();
      return json(have) === json(want);
    },
    async apply(c, t) {
      await c.s3.send(
        new PutBucketLifecycleConfigurationCommand({
          Bucket: t.physicalId,
          LifecycleConfiguration: { Rules: lifecycleRules(t.props) },
        }),
      );
    },
  },
  {
    resourceType: 'AWS::S3::Bucket',
    property: 'NotificationConfiguration',
    motoLimitation: {
      kind: 'cannot-verify',
      reason:
        'GetBucketNotificationConfiguration omits EventBridgeConfiguration; the S3 → EventBridge → SQS test checks it',
    },
    async inEffect(c, t) {
      const r = await c.s3.send(new GetBucketNotificationConfigurationCommand({ Bucket: t.physicalId }));
      return r.EventBridgeConfiguration !== undefined;
    },
    async apply(c, t) {
      const n = t.props.NotificationConfiguration as Props;
      const eb = (n.EventBridgeConfiguration as Props | undefined)?.EventBridgeEnabled === true;
      await c.s3.send(
        new PutBucketNotificationConfigurationCommand({
          Bucket: t.physicalId,
          NotificationConfiguration: eb ? { EventBridgeConfiguration: {} } : {},
        }),
      );
    },
  },
  {
    resourceType: 'AWS::S3::Bucket',
    property: 'BucketEncryption',
    async inEffect(c, t) {
      const r = await orUndefined(c.s3.send(new GetBucketEncryptionCommand({ Bucket: t.physicalId })));
      type CfnRule = { ServerSideEncryptionByDefault?: { SSEAlgorithm?: string } };
      const rules = (t.props.BucketEncryption as { ServerSideEncryptionConfiguration: CfnRule[] })
        .ServerSideEncryptionConfiguration;
      const want = rules[0]?.ServerSideEncryptionByDefault?.SSEAlgorithm;
      return (
        r?.ServerSideEncryptionConfiguration?.Rules?.[0]?.ApplyServerSideEncryptionByDefault?.SSEAlgorithm ===
        want
      );
    },
    async apply(c, t) {
      const rules = (t.props.BucketEncryption as { ServerSideEncryptionConfiguration: Props[] })
        .ServerSideEncryptionConfiguration;
      await c.s3.send(
        new PutBucketEncryptionCommand({
          Bucket: t.physicalId,
          ServerSideEncryptionConfiguration: {
            Rules: rules.map((r) => ({
              ApplyServerSideEncryptionByDefault: r.ServerSideEncryptionByDefault as never,
              BucketKeyEnabled: r.BucketKeyEnabled as boolean | undefined,
            })),
          },
        }),
      );
    },
  },
  {
    resourceType: 'AWS::S3::Bucket',
    property: 'PublicAccessBlockConfiguration',
    async inEffect(c, t) {
      const r = await orUndefined(c.s3.send(new GetPublicAccessBlockCommand({ Bucket: t.physicalId })));
      const p = r?.PublicAccessBlockConfiguration;
      return (
        !!p &&
        !!p.BlockPublicAcls &&
        !!p.BlockPublicPolicy &&
        !!p.IgnorePublicAcls &&
        !!p.RestrictPublicBuckets
      );
    },
    async apply(c, t) {
      await c.s3.send(
        new PutPublicAccessBlockCommand({
          Bucket: t.physicalId,
          PublicAccessBlockConfiguration: t.props.PublicAccessBlockConfiguration as never,
        }),
      );
    },
  },
  {
    resourceType: 'AWS::S3::BucketPolicy',
    property: '*',
    motoLimitation: {
      kind: 'cannot-apply',
      reason:
        'moto evaluates bucket policies without their Conditions, so the TLS-only Deny (aws:SecureTransport=false) would deny every request; test/infra asserts the policy',
    },
    async inEffect(c, t) {
      const r = await orUndefined(c.s3.send(new GetBucketPolicyCommand({ Bucket: String(t.props.Bucket) })));
      return r?.Policy !== undefined;
    },
    async apply(c, t) {
      await c.s3.send(
        new PutBucketPolicyCommand({ Bucket: String(t.props.Bucket), Policy: json(t.props.PolicyDocument) }),
      );
    },
  },
  {
    resourceType: 'AWS::SQS::QueuePolicy',
    property: '*',
    async inEffect(c, t) {
      for (const q of t.props.Queues as string[]) {
        const r = await c.sqs.send(
          new GetQueueAttributesCommand({ QueueUrl: q, AttributeNames: ['Policy'] }),
        );
        if (!r.Attributes?.Policy) return false;
      }
      return true;
    },
    async apply(c, t) {
      for (const q of t.props.Queues as string[]) {
        await c.sqs.send(
          new SetQueueAttributesCommand({
            QueueUrl: q,
            Attributes: { Policy: json(t.props.PolicyDocument) },
          }),
        );
      }
    },
  },
  {
    resourceType: 'AWS::DynamoDB::Table',
    property: 'PointInTimeRecoverySpecification',
    async inEffect(c, t) {
      const r = await c.ddb.send(new DescribeContinuousBackupsCommand({ TableName: t.physicalId }));
      return (
        r.ContinuousBackupsDescription?.PointInTimeRecoveryDescription?.PointInTimeRecoveryStatus ===
        'ENABLED'
      );
    },
    async apply(c, t) {
      await c.ddb.send(
        new UpdateContinuousBackupsCommand({
          TableName: t.physicalId,
          PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        }),
      );
    },
  },
  {
    resourceType: 'AWS::DynamoDB::Table',
    property: 'DeletionProtectionEnabled',
    async inEffect(c, t) {
      const r = await c.ddb.send(new DescribeTableCommand({ TableName: t.physicalId }));
      return r.Table?.DeletionProtectionEnabled === t.props.DeletionProtectionEnabled;
    },
    async apply(c, t) {
      await c.ddb.send(
        new UpdateTableCommand({
          TableName: t.physicalId,
          DeletionProtectionEnabled: Boolean(t.props.DeletionProtectionEnabled),
        }),
      );
    },
  },
  {
    resourceType: 'AWS::CloudWatch::Alarm',
    property: '*',
    async inEffect(c, t) {
      const r = await c.cloudwatch.send(new DescribeAlarmsCommand({ AlarmNames: [t.physicalId] }));
      return (r.MetricAlarms ?? []).length === 1;
    },
    async apply(c, t) {
      const p = t.props;
      await c.cloudwatch.send(
        new PutMetricAlarmCommand({
          AlarmName: t.physicalId,
          AlarmDescription: p.AlarmDescription as string | undefined,
          MetricName: String(p.MetricName),
          Namespace: String(p.Namespace),
          Statistic: p.Statistic as never,
          Period: Number(p.Period),
          Dimensions: p.Dimensions as never,
          Threshold: Number(p.Threshold),
          ComparisonOperator: p.ComparisonOperator as never,
          EvaluationPeriods: Number(p.EvaluationPeriods),
          TreatMissingData: p.TreatMissingData as string | undefined,
        }),
      );
    },
  },
  {
    // moto's CloudFormation has no AWS::Lambda::Url (and fails on outputs that GetAtt one, so the
    // stack exports no URL output: GetFunctionUrlConfig gives the URL).
    resourceType: 'AWS::Lambda::Url',
    property: '*',
    async inEffect(c, t) {
      const fn = String(t.props.TargetFunctionArn);
      const r = await orUndefined(c.lambda.send(new GetFunctionUrlConfigCommand({ FunctionName: fn })));
      return r?.AuthType === t.props.AuthType;
    },
    async apply(c, t) {
      await c.lambda.send(
        new CreateFunctionUrlConfigCommand({
          FunctionName: String(t.props.TargetFunctionArn),
          AuthType: t.props.AuthType as 'AWS_IAM',
        }),
      );
    },
  },
];

export interface ReapplyReport {
  readonly logicalId: string;
  readonly resourceType: string;
  readonly property: string;
  /**
   * in-effect: the emulator kept it; reapplied: the harness put it back; applied-unverified: put back
   * through an API whose read side the emulator lacks; not-applicable: the emulator cannot hold it;
   * still-missing: it should be there and is not.
   */
  readonly status: 'in-effect' | 'reapplied' | 'applied-unverified' | 'not-applicable' | 'still-missing';
  readonly note?: string;
}

/** Name given to a resource the emulator skipped entirely (alarms): the stack name and logical id. */
export function skippedResourceName(stackName: string, logicalId: string): string {
  return `${stackName}-${logicalId}`;
}

export function targetsOf(stack: DeployedStack, stackName: string, row: DroppedProperty): Target[] {
  return Object.entries(stack.template.Resources)
    .filter(
      ([, r]) =>
        r.Type === row.resourceType && (row.property === '*' || r.Properties?.[row.property] !== undefined),
    )
    .map(([logicalId, r]) => ({
      logicalId,
      physicalId: stack.physical[logicalId] ?? skippedResourceName(stackName, logicalId),
      props: resolve(stack, r.Properties ?? {}) as Props,
    }));
}

/** Checks every row against the deployed stack; applies what is missing when `apply` is set. */
export async function reapplyDropped(
  c: CloudClients,
  stack: DeployedStack,
  stackName: string,
  opts: { apply: boolean; moto: boolean },
  rows: readonly DroppedProperty[] = DROPPED_PROPERTIES,
): Promise<ReapplyReport[]> {
  const out: ReapplyReport[] = [];
  for (const row of rows) {
    const limitation = opts.moto ? row.motoLimitation : undefined;
    for (const t of targetsOf(stack, stackName, row)) {
      const base = { logicalId: t.logicalId, resourceType: row.resourceType, property: row.property };
      if (limitation?.kind === 'cannot-apply') {
        out.push({ ...base, status: 'not-applicable', note: limitation.reason });
        continue;
      }
      if (await row.inEffect(c, t)) {
        out.push({ ...base, status: 'in-effect' });
        continue;
      }
      if (opts.apply) await row.apply(c, t);
      if (opts.apply && limitation?.kind === 'cannot-verify') {
        out.push({ ...base, status: 'applied-unverified', note: limitation.reason });
        continue;
      }
      const ok = opts.apply && (await row.inEffect(c, t));
      out.push({ ...base, status: ok ? 'reapplied' : 'still-missing' });
    }
  }
  return out;
}
