/**
 * Local event-source-mapping runner: plays what Lambda's SQS event source mapping does, for an
 * emulator that runs no Lambda. It receives a batch, builds the SQS event, invokes the function and
 * deletes only what succeeded: everything when the function returns, nothing when it throws, and
 * all but the reported `batchItemFailures` when the mapping has ReportBatchItemFailures (an invalid
 * report fails the whole batch, as in Lambda). Visibility timeouts and redrive to the DLQ are left
 * to SQS.
 */
import {
  DeleteMessageBatchCommand,
  type Message,
  ReceiveMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSEvent, SQSRecord } from 'aws-lambda';

export interface MappingSpec {
  readonly queueUrl: string;
  readonly queueArn: string;
  readonly batchSize: number;
  readonly maximumBatchingWindowSeconds: number;
  readonly reportBatchItemFailures: boolean;
}

export type Invoke = (event: SQSEvent) => Promise<unknown>;

export interface BatchOutcome {
  readonly received: number;
  readonly deleted: number;
  /** Messages left on the queue to be retried after their visibility timeout. */
  readonly retried: number;
  /** Set when the invocation failed or its response was invalid. */
  readonly error?: string;
}

export function toRecord(m: Message, queueArn: string, region: string): SQSRecord {
  const a = m.Attributes ?? {};
  return {
    messageId: m.MessageId!,
    receiptHandle: m.ReceiptHandle!,
    body: m.Body ?? '',
    attributes: {
      ApproximateReceiveCount: a.ApproximateReceiveCount ?? '1',
      SentTimestamp: a.SentTimestamp ?? String(Date.now()),
      SenderId: a.SenderId ?? '',
      ApproximateFirstReceiveTimestamp: a.ApproximateFirstReceiveTimestamp ?? String(Date.now()),
    },
    messageAttributes: Object.fromEntries(
      Object.entries(m.MessageAttributes ?? {}).map(([k, v]) => [
        k,
        {
          stringValue: v.StringValue,
          dataType: v.DataType ?? 'String',
          stringListValues: [],
          binaryListValues: [],
        },
      ]),
    ),
    md5OfBody: m.MD5OfBody ?? '',
    eventSource: 'aws:sqs',
    eventSourceARN: queueArn,
    awsRegion: region,
  };
}

/** Which message ids succeeded, given the function's response; undefined means the whole batch failed. */
export function succeededIds(
  batch: readonly SQSRecord[],
  response: unknown,
  reportFailures: boolean,
): string[] | undefined {
  const ids = batch.map((r) => r.messageId);
  if (!reportFailures) return ids;
  if (response === null || response === undefined) return ids;
  const failures = (response as { batchItemFailures?: unknown }).batchItemFailures;
  if (failures === undefined) return ids;
  if (!Array.isArray(failures)) return undefined;
  const failed = new Set<string>();
  for (const f of failures) {
    const id = (f as { itemIdentifier?: unknown })?.itemIdentifier;
    if (typeof id !== 'string' || id === '' || !ids.includes(id)) return undefined;
    failed.add(id);
  }
  return ids.filter((id) => !failed.has(id));
}

export class QueuePoller {
  private readonly sqs: SQSClient;
  readonly mapping: MappingSpec;
  private readonly invoke: Invoke;
  private readonly region: string;
  private stopped = false;

  constructor(sqs: SQSClient, mapping: MappingSpec, invoke: Invoke, region: string) {
    this.sqs = sqs;
    this.mapping = mapping;
    this.invoke = invoke;
    this.region = region;
  }

  private async receive(waitSeconds: number): Promise<Message[]> {
    const { batchSize, maximumBatchingWindowSeconds } = this.mapping;
    const out: Message[] = [];
    const windowEnd = Date.now() + maximumBatchingWindowSeconds * 1000;
    do {
      const r = await this.sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: this.mapping.queueUrl,
          MaxNumberOfMessages: Math.min(10, batchSize - out.length),
          WaitTimeSeconds: out.length === 0 ? waitSeconds : 0,
          MessageSystemAttributeNames: ['All'],
          MessageAttributeNames: ['All'],
        }),
      );
      out.push(...(r.Messages ?? []));
      if ((r.Messages ?? []).length === 0 && out.length > 0) break;
    } while (out.length > 0 && out.length < batchSize && Date.now() < windowEnd);
    return out;
  }

  /** Receives one batch (waiting up to `waitSeconds` for the first message) and processes it. */
  async pollOnce(waitSeconds = 1): Promise<BatchOutcome> {
    const messages = await this.receive(waitSeconds);
    if (messages.length === 0) return { received: 0, deleted: 0, retried: 0 };
    const records = messages.map((m) => toRecord(m, this.mapping.queueArn, this.region));
    let ok: string[] | undefined;
    let error: string | undefined;
    try {
      const response = await this.invoke({ Records: records });
      ok = succeededIds(records, response, this.mapping.reportBatchItemFailures);
      if (!ok) error = 'invalid batchItemFailures in the response: the whole batch is retried';
    } catch (e) {
      error = (e as Error).message;
    }
    const toDelete = records.filter((r) => ok?.includes(r.messageId));
    for (let i = 0; i < toDelete.length; i += 10) {
      const chunk = toDelete.slice(i, i + 10);
      await this.sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl: this.mapping.queueUrl,
          Entries: chunk.map((r, j) => ({ Id: String(j), ReceiptHandle: r.receiptHandle })),
        }),
      );
    }
    return {
      received: records.length,
      deleted: toDelete.length,
      retried: records.length - toDelete.length,
      error,
    };
  }

  /** Polls until `stop()`; `onBatch` sees every non-empty batch. */
  async run(onBatch: (o: BatchOutcome) => void = () => undefined): Promise<void> {
    while (!this.stopped) {
      const o = await this.pollOnce(1);
      if (o.received > 0) onBatch(o);
    }
  }

  stop(): void {
    this.stopped = true;
  }
}
