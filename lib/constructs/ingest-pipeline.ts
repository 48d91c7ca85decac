import { Duration } from 'aws-cdk-lib';
import { Alarm, ComparisonOperator, TreatMissingData } from 'aws-cdk-lib/aws-cloudwatch';
import { Match, Rule } from 'aws-cdk-lib/aws-events';
import { SqsQueue } from 'aws-cdk-lib/aws-events-targets';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import type { Queue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { workQueue } from './work-queue.ts';

export interface IngestPipelineProps {
  /** The bucket whose Object Created events feed the pipeline (EventBridge must be enabled on it). */
  readonly bucket: IBucket;
  /** Only keys under this prefix produce events. */
  readonly keyPrefix: string;
  /** Timeout of the function that consumes the queue; the visibility timeout is six times it. */
  readonly consumerTimeout: Duration;
  /**
   * Receives before a message is moved to the DLQ.
   * @default - DEFAULTS.maxReceiveCount (5)
   */
  readonly maxReceiveCount?: number;
}

/**
 * S3 Object Created (EventBridge rule on bucket and key prefix) → SQS queue (with DLQ and an
 * alarm on DLQ depth) → a consumer function added with `addConsumer`.
 */
export class IngestPipeline extends Construct {
  readonly queue: Queue;
  readonly deadLetterQueue: Queue;
  readonly rule: Rule;
  readonly dlqAlarm: Alarm;

  constructor(scope: Construct, id: string, props: IngestPipelineProps) {
    super(scope, id);
    ({ queue: this.queue, deadLetterQueue: this.deadLetterQueue } = workQueue(this, '', props));
    this.rule = new Rule(this, 'ObjectCreated', {
      description: 'Objects created under the safes prefix go to the ingest queue',
      eventPattern: {
        source: ['aws.s3'],
        detailType: ['Object Created'],
        detail: {
          bucket: { name: [props.bucket.bucketName] },
          object: { key: Match.prefix(props.keyPrefix) },
        },
      },
      targets: [new SqsQueue(this.queue)],
    });
    this.dlqAlarm = new Alarm(this, 'DeadLetterAlarm', {
      alarmDescription: 'Ingest messages failed repeatedly and were moved to the dead-letter queue',
      metric: this.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(1) }),
      threshold: 0,
      comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: TreatMissingData.NOT_BREACHING,
    });
  }

  /** Wires a function to the queue with partial batch failure reporting. */
  addConsumer(fn: IFunction, batchSize: number): void {
    fn.addEventSource(
      new SqsEventSource(this.queue, {
        batchSize,
        reportBatchItemFailures: true,
        maxBatchingWindow: batchSize > 10 ? Duration.seconds(1) : undefined,
      }),
    );
  }
}
