import { CfnOutput, type Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import { Key } from 'aws-cdk-lib/aws-kms';
import { FunctionUrlAuthType } from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type { Construct } from 'constructs';
import type { StoredPolicy } from '../core/format/generation.ts';
import { CatalogTable } from './constructs/catalog-table.ts';
import { CdpFunction } from './constructs/cdp-function.ts';
import { Compaction } from './constructs/compaction.ts';
import { IngestPipeline } from './constructs/ingest-pipeline.ts';
import { RpoMonitor } from './constructs/rpo-monitor.ts';
import { SafesBucket } from './constructs/safes-bucket.ts';
import { workQueue } from './constructs/work-queue.ts';
import { DEFAULTS } from './defaults.ts';

export interface OffsiteStackProps extends StackProps {
  /**
   * What happens to the bucket, table and key when the stack is deleted.
   * @default - RemovalPolicy.RETAIN: backups and their catalog outlive the stack
   */
  readonly dataRemovalPolicy?: RemovalPolicy;
  /**
   * RPO target of every safe that does not set its own in the catalog.
   * @default - DEFAULTS.defaultRpo (1 hour)
   */
  readonly defaultRpo?: Duration;
  /**
   * Retention of safes without their own policy (`cdp-agent policy` writes one into the safe).
   * @default - DEFAULTS.defaultRetention
   */
  readonly defaultRetention?: StoredPolicy;
}

/** Names of the stack outputs; the local harness and the agent read these. */
export const OUTPUTS = {
  bucket: 'SafesBucketName',
  table: 'CatalogTableName',
  queueUrl: 'IngestQueueUrl',
  dlqUrl: 'IngestDeadLetterQueueUrl',
  ingestFunction: 'IngestFunctionName',
  keyArn: 'DataKeyArn',
  monitorFunction: 'MonitorFunctionName',
  queryFunction: 'QueryFunctionName',
  rpoAlarm: 'RpoAlarmName',
  restoreFunction: 'RestoreFunctionName',
  exportFunction: 'ExportFunctionName',
  exportQueueUrl: 'ExportQueueUrl',
  compactionFunction: 'CompactionFunctionName',
  compactionQueueUrl: 'CompactionQueueUrl',
} as const;

/** The offsite tier: safes bucket, catalog, ingest pipeline with the index function, RPO monitor, query function. */
export class OffsiteStack extends Stack {
  constructor(scope: Construct, id: string, props: OffsiteStackProps = {}) {
    super(scope, id, props);
    const removalPolicy = props.dataRemovalPolicy ?? RemovalPolicy.RETAIN;
    const key = new Key(this, 'DataKey', {
      description: 'Encrypts the Disk Safes bucket and the catalog at rest',
      enableKeyRotation: true,
      removalPolicy,
    });
    const safes = new SafesBucket(this, 'Safes', { encryptionKey: key, removalPolicy });
    const catalog = new CatalogTable(this, 'Catalog', { encryptionKey: key, removalPolicy });
    const ingest = new IngestPipeline(this, 'Ingest', {
      bucket: safes.bucket,
      keyPrefix: DEFAULTS.safesPrefix,
      consumerTimeout: DEFAULTS.ingestTimeout,
    });
    const ingestFn = new CdpFunction(this, 'IngestFunction', {
      entry: 'functions/ingest/handler.ts',
      serviceName: 'cdp-ingest',
      timeout: DEFAULTS.ingestTimeout,
      memoryMiB: DEFAULTS.ingestMemoryMiB,
      environment: {
        CATALOG_TABLE: catalog.table.tableName,
        SAFES_BUCKET: safes.bucket.bucketName,
      },
    }).fn;
    catalog.table.grantReadWriteData(ingestFn);
    safes.bucket.grantRead(ingestFn);
    ingest.addConsumer(ingestFn, DEFAULTS.ingestBatchSize);

    const compaction = new Compaction(this, 'Compaction', {
      bucket: safes.bucket,
      catalog: catalog.table,
      defaultRetention: props.defaultRetention ?? DEFAULTS.defaultRetention,
      grace: DEFAULTS.compactionGrace,
    });
    // ingest queues a compaction when a safe's chain since its last compaction passes the threshold
    ingestFn.addEnvironment('COMPACTION_QUEUE_URL', compaction.queue.queueUrl);
    ingestFn.addEnvironment('COMPACTION_CHAIN_THRESHOLD', String(DEFAULTS.compactionChainThreshold));
    compaction.queue.grantSendMessages(ingestFn);

    const defaultRpo = props.defaultRpo ?? DEFAULTS.defaultRpo;
    const monitor = new RpoMonitor(this, 'Rpo', { catalog: catalog.table, defaultRpo });
    const queryFn = new CdpFunction(this, 'QueryFunction', {
      entry: 'functions/query/handler.ts',
      serviceName: 'cdp-query',
      timeout: DEFAULTS.queryTimeout,
      memoryMiB: DEFAULTS.smallFunctionMemoryMiB,
      environment: {
        CATALOG_TABLE: catalog.table.tableName,
        DEFAULT_RPO_SECONDS: String(defaultRpo.toSeconds()),
      },
    }).fn;
    catalog.table.grantReadData(queryFn);
    // IAM-authorized URL (lambda:InvokeFunctionUrl). No stack output for it: GetFunctionUrlConfig
    // gives it, and the local emulator cannot resolve one.
    queryFn.addFunctionUrl({ authType: FunctionUrlAuthType.AWS_IAM });

    const { queue: exportQueue } = workQueue(this, 'Export', { consumerTimeout: DEFAULTS.exportTimeout });
    const exportFn = new CdpFunction(this, 'ExportFunction', {
      entry: 'functions/export/handler.ts',
      serviceName: 'cdp-export',
      timeout: DEFAULTS.exportTimeout,
      memoryMiB: DEFAULTS.exportMemoryMiB,
      environment: { CATALOG_TABLE: catalog.table.tableName, SAFES_BUCKET: safes.bucket.bucketName },
    }).fn;
    catalog.table.grantReadWriteData(exportFn);
    safes.bucket.grantRead(exportFn, `${DEFAULTS.safesPrefix}*`);
    safes.bucket.grantPut(exportFn, `${DEFAULTS.exportsPrefix}*`);
    exportFn.addEventSource(new SqsEventSource(exportQueue, { batchSize: 1, reportBatchItemFailures: true }));

    const restoreFn = new CdpFunction(this, 'RestoreFunction', {
      entry: 'functions/restore/handler.ts',
      serviceName: 'cdp-restore',
      timeout: DEFAULTS.restoreTimeout,
      memoryMiB: DEFAULTS.restoreMemoryMiB,
      environment: {
        CATALOG_TABLE: catalog.table.tableName,
        SAFES_BUCKET: safes.bucket.bucketName,
        URL_TTL_SECONDS: String(DEFAULTS.restoreUrlTtl.toSeconds()),
        EXPORT_QUEUE_URL: exportQueue.queueUrl,
      },
    }).fn;
    // read for plans; write for export records (the catalog) and starting export uploads
    catalog.table.grantReadWriteData(restoreFn);
    safes.bucket.grantPut(restoreFn, `${DEFAULTS.exportsPrefix}*`);
    exportQueue.grantSendMessages(restoreFn);
    // Read-only on the safes: its presigned URLs carry exactly this permission.
    safes.bucket.grantRead(restoreFn, `${DEFAULTS.safesPrefix}*`);

    new CfnOutput(this, OUTPUTS.bucket, { value: safes.bucket.bucketName });
    new CfnOutput(this, OUTPUTS.table, { value: catalog.table.tableName });
    new CfnOutput(this, OUTPUTS.queueUrl, { value: ingest.queue.queueUrl });
    new CfnOutput(this, OUTPUTS.dlqUrl, { value: ingest.deadLetterQueue.queueUrl });
    new CfnOutput(this, OUTPUTS.ingestFunction, { value: ingestFn.functionName });
    new CfnOutput(this, OUTPUTS.keyArn, { value: key.keyArn });
    new CfnOutput(this, OUTPUTS.monitorFunction, { value: monitor.fn.functionName });
    new CfnOutput(this, OUTPUTS.queryFunction, { value: queryFn.functionName });
    new CfnOutput(this, OUTPUTS.rpoAlarm, { value: monitor.alarm.alarmName });
    new CfnOutput(this, OUTPUTS.restoreFunction, { value: restoreFn.functionName });
    new CfnOutput(this, OUTPUTS.exportFunction, { value: exportFn.functionName });
    new CfnOutput(this, OUTPUTS.exportQueueUrl, { value: exportQueue.queueUrl });
    new CfnOutput(this, OUTPUTS.compactionFunction, { value: compaction.fn.functionName });
    new CfnOutput(this, OUTPUTS.compactionQueueUrl, { value: compaction.queue.queueUrl });
  }
}
