import type { SQSRecord } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { succeededIds, toRecord } from '../../../scripts/localcloud/esm-runner.ts';

const batch = ['a', 'b', 'c'].map((id) =>
  toRecord({ MessageId: id, ReceiptHandle: `r-${id}`, Body: id }, 'arn:q', 'us-east-1'),
);

describe('succeededIds (Lambda SQS partial batch response semantics)', () => {
  it('treats a plain return as success of the whole batch', () => {
    expect(succeededIds(batch, undefined, true)).toEqual(['a', 'b', 'c']);
    expect(succeededIds(batch, { batchItemFailures: [] }, true)).toEqual(['a', 'b', 'c']);
  });

  it('keeps the reported failures and deletes the rest', () => {
    expect(succeededIds(batch, { batchItemFailures: [{ itemIdentifier: 'b' }] }, true)).toEqual(['a', 'c']);
  });

  it('ignores batchItemFailures when the mapping does not report them', () => {
    expect(succeededIds(batch, { batchItemFailures: [{ itemIdentifier: 'b' }] }, false)).toEqual([
      'a',
      'b',
      'c',
    ]);
  });

  it.each([
    ['an unknown id', { batchItemFailures: [{ itemIdentifier: 'zzz' }] }],
    ['an empty id', { batchItemFailures: [{ itemIdentifier: '' }] }],
    ['a missing id', { batchItemFailures: [{}] }],
    ['a non-array', { batchItemFailures: 'b' }],
  ])('fails the whole batch for %s', (_, response) => {
    expect(succeededIds(batch, response, true)).toBeUndefined();
  });

  it('builds Lambda-shaped SQS records', () => {
    const r: SQSRecord = batch[0]!;
    expect(r).toMatchObject({
      messageId: 'a',
      receiptHandle: 'r-a',
      eventSource: 'aws:sqs',
      eventSourceARN: 'arn:q',
    });
    expect(r.attributes.ApproximateReceiveCount).toBe('1');
  });
});
