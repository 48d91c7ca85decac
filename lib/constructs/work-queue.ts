import type { Duration } from 'aws-cdk-lib';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import { DEFAULTS, visibilityTimeoutFor } from '../defaults.ts';

export interface WorkQueueOptions {
  /** The consumer function's timeout; the visibility timeout is six times it. */
  readonly consumerTimeout: Duration;
  /**
   * Receives before a message is moved to the DLQ.
   * @default - DEFAULTS.maxReceiveCount (5)
   */
  readonly maxReceiveCount?: number;
}

/**
 * A work queue and its dead-letter queue, both SSE-SQS encrypted and TLS-only, the DLQ keeping
 * messages for the SQS maximum. Created in `scope` as `<prefix>DeadLetterQueue` and `<prefix>Queue`.
 */
export function workQueue(
  scope: Construct,
  prefix: string,
  o: WorkQueueOptions,
): { readonly queue: Queue; readonly deadLetterQueue: Queue } {
  const deadLetterQueue = new Queue(scope, `${prefix}DeadLetterQueue`, {
    encryption: QueueEncryption.SQS_MANAGED,
    enforceSSL: true,
    retentionPeriod: DEFAULTS.dlqRetention,
  });
  const queue = new Queue(scope, `${prefix}Queue`, {
    encryption: QueueEncryption.SQS_MANAGED,
    enforceSSL: true,
    visibilityTimeout: visibilityTimeoutFor(o.consumerTimeout),
    deadLetterQueue: {
      queue: deadLetterQueue,
      maxReceiveCount: o.maxReceiveCount ?? DEFAULTS.maxReceiveCount,
    },
  });
  return { queue, deadLetterQueue };
}
