import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type { IKey } from 'aws-cdk-lib/aws-kms';
import {
  BlockPublicAccess,
  Bucket,
  BucketEncryption,
  type CfnBucket,
  ObjectOwnership,
} from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { DEFAULTS } from '../defaults.ts';

export interface SafesBucketProps {
  /** Key that encrypts every object at rest (SSE-KMS with an S3 bucket key). */
  readonly encryptionKey: IKey;
  /**
   * Days after which an incomplete multipart upload is aborted.
   * @default - DEFAULTS.abortIncompleteMultipartUploadDays (2)
   */
  readonly abortIncompleteMultipartUploadDays?: number;
  /**
   * Days an overwritten or deleted object version is kept before it expires.
   * @default - DEFAULTS.noncurrentVersionRetentionDays (30)
   */
  readonly noncurrentVersionRetentionDays?: number;
  /**
   * What happens to the bucket when the stack is deleted.
   * @default - RemovalPolicy.RETAIN: backups outlive the stack
   */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * The bucket that holds the Disk Safes: private, encrypted, TLS-only, versioned, with S3 events
 * sent to EventBridge through the native CloudFormation property (no custom resource).
 */
export class SafesBucket extends Construct {
  readonly bucket: Bucket;

  constructor(scope: Construct, id: string, props: SafesBucketProps) {
    super(scope, id);
    this.bucket = new Bucket(this, 'Bucket', {
      encryption: BucketEncryption.KMS,
      encryptionKey: props.encryptionKey,
      bucketKeyEnabled: true,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      versioned: true,
      lifecycleRules: [
        {
          id: 'abort-incomplete-multipart-uploads',
          abortIncompleteMultipartUploadAfter: Duration.days(
            props.abortIncompleteMultipartUploadDays ?? DEFAULTS.abortIncompleteMultipartUploadDays,
          ),
        },
        {
          id: 'expire-noncurrent-versions',
          noncurrentVersionExpiration: Duration.days(
            props.noncurrentVersionRetentionDays ?? DEFAULTS.noncurrentVersionRetentionDays,
          ),
        },
      ],
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    });
    const cfn = this.bucket.node.defaultChild as CfnBucket;
    cfn.addPropertyOverride('NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled', true);
  }
}
