/** Sends JSON tasks to an SQS queue in batches of ten, failing loudly on any entry SQS refused. */
import { SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';

export async function sendTasks(
  sqs: SQSClient,
  queueUrl: string,
  tasks: readonly unknown[],
  what: string,
): Promise<void> {
  for (let i = 0; i < tasks.length; i += 10) {
    const batch = tasks.slice(i, i + 10);
    const r = await sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: batch.map((t, j) => ({ Id: String(i + j), MessageBody: JSON.stringify(t) })),
      }),
    );
    if (r.Failed?.length)
      throw new Error(`could not queue ${what}: ${r.Failed.map((f) => f.Message).join('; ')}`);
  }
}
