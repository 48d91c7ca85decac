/**
 * Safe defaults for the offsite stack, in one place. Props of the constructs default to these;
 * the infra tests assert the synthesized template carries them.
 */
import { Duration } from 'aws-cdk-lib';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { SAFES_PREFIX } from '../core/keys.ts';

export const DEFAULTS = {
  /** Incomplete multipart uploads (an agent killed mid-upload) are aborted after this many days. */
  abortIncompleteMultipartUploadDays: 2,
  /** Old object versions (overwritten or deleted) are kept this long before expiring. */
  noncurrentVersionRetentionDays: 30,
  /** Lambda log groups keep logs this long. */
  logRetention: RetentionDays.ONE_MONTH,
  /** Messages a function fails this many times go to the dead-letter queue. */
  maxReceiveCount: 5,
  /** The DLQ keeps messages for the SQS maximum. */
  dlqRetention: Duration.days(14),
  /** The ingest function's limits. */
  ingestTimeout: Duration.seconds(60),
  ingestMemoryMiB: 512,
  ingestBatchSize: 10,
  /** Every safe's RPO target unless the catalog sets another; the lag alarm fires past it. */
  defaultRpo: Duration.hours(1),
  /** How often the RPO monitor measures replication lag. */
  monitorInterval: Duration.minutes(1),
  /** The monitor's and the query function's limits. */
  monitorTimeout: Duration.seconds(30),
  queryTimeout: Duration.seconds(10),
  smallFunctionMemoryMiB: 256,
  /** The restore function's limits, and how long its presigned segment URLs live. */
  restoreTimeout: Duration.seconds(60),
  restoreMemoryMiB: 1024,
  restoreUrlTtl: Duration.hours(1),
  /** The export function builds one multipart part (64 MiB by default) per invocation. */
  exportTimeout: Duration.minutes(5),
  exportMemoryMiB: 1024,
  /** Where exports (raw images of RPs, for failover) are written; outside the ingest prefix. */
  exportsPrefix: 'exports/',
  /** Compaction: how often every safe is compacted, and the function's limits (Lambda's maximum time). */
  compactionInterval: Duration.hours(6),
  compactionTimeout: Duration.minutes(15),
  compactionMemoryMiB: 1024,
  /** Every retained RP restores from one full map plus at most this many deltas. */
  compactionMaxDeltas: 7,
  /** Ingest queues a compaction once a safe has this many RPs past its last compaction. */
  compactionChainThreshold: 24,
  /** Retired objects are deleted after this; twice the restore URL lifetime, so no plan outlives its segments. */
  compactionGrace: Duration.hours(2),
  /** Retention of safes without their own policy: 24 latest, 48 hourly, 14 daily, 8 weekly, 12 monthly. */
  defaultRetention: { last: 24, hourly: 48, daily: 14, weekly: 8, monthly: 12, locked: [] as number[] },
  /** CloudWatch namespace of the product's metrics (Powertools EMF). */
  metricsNamespace: 'CdpOffsite',
  /** Prefix under which agents upload; only these objects produce ingest events. */
  safesPrefix: SAFES_PREFIX,
} as const;

/** AWS recommends a queue visibility timeout of at least six times the function timeout. */
export function visibilityTimeoutFor(functionTimeout: Duration): Duration {
  return Duration.seconds(functionTimeout.toSeconds() * 6);
}
