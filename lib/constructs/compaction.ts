import { type Duration, Stack } from 'aws-cdk-lib';
import type { ITable } from 'aws-cdk-lib/aws-dynamodb';
import { Rule, Schedule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import type { Queue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import type { StoredPolicy } from '../../core/format/generation.ts';
import { DEFAULTS } from '../defaults.ts';
import { CdpFunction } from './cdp-function.ts';
import { workQueue } from './work-queue.ts';

export interface CompactionProps {
  readonly bucket: IBucket;
  readonly catalog: ITable;
  /** Retention of safes without their own policy.json. */
  readonly defaultRetention: StoredPolicy;
  /**
   * How often every safe is compacted.
   * @default - DEFAULTS.compactionInterval
   */
  readonly interval?: Duration;
  /** Unreferenced objects are deleted this long after they were retired; must exceed any restore URL's lifetime. */
  readonly grace: Duration;
}

/**
 * Server-side retention and compaction: a function that consumes compact / rewrite / finish tasks
 * from a queue (fan-out over invocations; batch size 1, partial failures, DLQ), and a schedule
 * that queues a compact task for every safe.
 */
export class Compaction extends Construct {
  readonly fn: NodejsFunction;
  readonly queue: Queue;
  readonly deadLetterQueue: Queue;

  constructor(scope: Construct, id: string, props: CompactionProps) {
    super(scope, id);
    ({ queue: this.queue, deadLetterQueue: this.deadLetterQueue } = workQueue(this, '', {
      consumerTimeout: DEFAULTS.compactionTimeout,
    }));
    this.fn = new CdpFunction(this, 'Function', {
      entry: 'functions/compact/handler.ts',
      serviceName: 'cdp-compaction',
      timeout: DEFAULTS.compactionTimeout,
      memoryMiB: DEFAULTS.compactionMemoryMiB,
      environment: {
        CATALOG_TABLE: props.catalog.tableName,
        SAFES_BUCKET: props.bucket.bucketName,
        COMPACTION_QUEUE_URL: this.queue.queueUrl,
        DEFAULT_RETENTION: Stack.of(this).toJsonString(props.defaultRetention),
        GRACE_SECONDS: String(props.grace.toSeconds()),
        MAX_DELTAS: String(DEFAULTS.compactionMaxDeltas),
      },
    }).fn;
    props.catalog.grantReadWriteData(this.fn);
    // reads, writes and deletes safe objects (deletes only garbage past its grace period)
    props.bucket.grantReadWrite(this.fn, `${DEFAULTS.safesPrefix}*`);
    props.bucket.grantDelete(this.fn, `${DEFAULTS.safesPrefix}*`);
    this.queue.grantSendMessages(this.fn);
    this.fn.addEventSource(new SqsEventSource(this.queue, { batchSize: 1, reportBatchItemFailures: true }));
    new Rule(this, 'Schedule', {
      description: 'Applies retention and compacts every safe',
      schedule: Schedule.rate(props.interval ?? DEFAULTS.compactionInterval),
      targets: [new LambdaFunction(this.fn, { retryAttempts: 2 })],
    });
  }
}
