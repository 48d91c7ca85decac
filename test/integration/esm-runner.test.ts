/**
 * The local event-source-mapping runner against real SQS queues in moto: partial batch failures
 * delete only the successes, a thrown error deletes nothing, and SQS redrives a message that keeps
 * failing to the DLQ after maxReceiveCount receives.
 */

import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
} from '@aws-sdk/client-sqs';
import type { SQSEvent } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { type Invoke, QueuePoller } from '../../scripts/localcloud/esm-runner.ts';
import { useLocalCloud } from '../support/local-cloud.ts';

const cloud = useLocalCloud();
let n = 0;

async function queuePair(maxReceiveCount = 2): Promise<{ url: string; arn: string; dlqUrl: string }> {
  const sqs = cloud.clients.sqs;
  n++;
  const dlq = await sqs.send(new CreateQueueCommand({ QueueName: `dlq-${n}` }));
  const dlqArn = (
    await sqs.send(new GetQueueAttributesCommand({ QueueUrl: dlq.QueueUrl, AttributeNames: ['QueueArn'] }))
  ).Attributes!.QueueArn!;
  const q = await sqs.send(
    new CreateQueueCommand({
      QueueName: `q-${n}`,
      Attributes: {
        VisibilityTimeout: '1',
        RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount }),
      },
    }),
  );
  const arn = (
    await sqs.send(new GetQueueAttributesCommand({ QueueUrl: q.QueueUrl, AttributeNames: ['QueueArn'] }))
  ).Attributes!.QueueArn!;
  return { url: q.QueueUrl!, arn, dlqUrl: dlq.QueueUrl! };
}

async function send(url: string, bodies: string[]): Promise<void> {
  await cloud.clients.sqs.send(
    new SendMessageBatchCommand({
      QueueUrl: url,
      Entries: bodies.map((b, i) => ({ Id: String(i), MessageBody: b })),
    }),
  );
}

async function depth(url: string): Promise<number> {
  const r = await cloud.clients.sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: url,
      AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
    }),
  );
  return (
    Number(r.Attributes!.ApproximateNumberOfMessages) +
    Number(r.Attributes!.ApproximateNumberOfMessagesNotVisible)
  );
}

function poller(
  q: { url: string; arn: string },
  invoke: Invoke,
  reportBatchItemFailures = true,
): QueuePoller {
  const mapping = {
    queueUrl: q.url,
    queueArn: q.arn,
    batchSize: 10,
    maximumBatchingWindowSeconds: 0,
    reportBatchItemFailures,
  };
  return new QueuePoller(cloud.clients.sqs, mapping, invoke, 'us-east-1');
}

const failBodies =
  (bad: string) =>
  async (e: SQSEvent): Promise<unknown> => ({
    batchItemFailures: e.Records.filter((r) => r.body === bad).map((r) => ({ itemIdentifier: r.messageId })),
  });

describe('QueuePoller', () => {
  it('deletes the successes of a batch and leaves the reported failures on the queue', async () => {
    const q = await queuePair(5);
    await send(q.url, ['ok-1', 'bad', 'ok-2']);
    const seen: string[] = [];
    const o = await poller(q, async (e) => {
      seen.push(...e.Records.map((r) => r.body));
      return failBodies('bad')(e);
    }).pollOnce(1);
    expect(seen.sort()).toEqual(['bad', 'ok-1', 'ok-2']);
    expect(o).toMatchObject({ received: 3, deleted: 2, retried: 1 });
    expect(await depth(q.url)).toBe(1);
  });

  it('deletes nothing when the function throws, nor when its failure report is invalid', async () => {
    const q = await queuePair(5);
    await send(q.url, ['a', 'b']);
    const thrown = await poller(q, async () => {
      throw new Error('boom');
    }).pollOnce(1);
    expect(thrown).toMatchObject({ received: 2, deleted: 0, error: 'boom' });
    // long-polls until the two messages are visible again (their visibility timeout is 1 s)
    const invalid = await poller(q, async () => ({
      batchItemFailures: [{ itemIdentifier: 'not-in-batch' }],
    })).pollOnce(5);
    expect(invalid).toMatchObject({ received: 2, deleted: 0 });
    expect(invalid.error).toMatch(/invalid batchItemFailures/);
    expect(await depth(q.url)).toBe(2);
  });

  it('lets SQS redrive a message that keeps failing to the DLQ after maxReceiveCount receives', async () => {
    const q = await queuePair(2);
    await send(q.url, ['poison', 'fine']);
    const p = poller(q, failBodies('poison'));
    const receives: number[] = [];
    const counts: string[] = [];
    for (let i = 0; i < 4; i++) {
      const o = await p.pollOnce(3); // long-polls until the failed message is visible again
      receives.push(o.received);
    }
    expect(receives.reduce((a, b) => a + b, 0)).toBe(3);
    const dlq = await cloud.clients.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: q.dlqUrl,
        WaitTimeSeconds: 1,
        MessageSystemAttributeNames: ['All'],
      }),
    );
    counts.push(...(dlq.Messages ?? []).map((m) => m.Body!));
    expect(counts).toEqual(['poison']);
    expect(await depth(q.url)).toBe(0);
  });
});
