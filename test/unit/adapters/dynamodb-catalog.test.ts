/**
 * Issue 15, point 8: recording a generation must not take a throttled (or otherwise cancelled)
 * transaction for "already expired". Only the RP's own condition failing means a rerun found it
 * done; anything else is thrown so the compaction task is retried.
 */
import { TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { TransactWriteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { describe, expect, it } from 'vitest';
import { DynamoDbCatalog } from '#adapters/dynamodb-catalog.ts';

function catalogThatCancels(codes: string[]): { catalog: DynamoDbCatalog; sent: string[] } {
  const sent: string[] = [];
  const doc = {
    send: async (cmd: unknown) => {
      sent.push((cmd as object).constructor.name);
      if (cmd instanceof TransactWriteCommand)
        throw new TransactionCanceledException({
          message: 'Transaction cancelled',
          $metadata: {},
          CancellationReasons: codes.map((Code) => ({ Code })),
        });
      if (cmd instanceof UpdateCommand) return {};
      return {};
    },
  };
  return { catalog: new DynamoDbCatalog(doc as never, 'table'), sent };
}

const generation = {
  safe: 's',
  generation: 2,
  upTo: 9,
  expired: [3],
  written: [],
  condemned: [],
  revived: [],
  retention: { last: 1, hourly: 0, daily: 0, weekly: 0, monthly: 0, locked: [] },
  at: '2026-12-03T00:00:00.000Z',
};

describe('DynamoDbCatalog.recordGeneration', () => {
  it('takes a failed condition on the RP for "already expired" and goes on', async () => {
    const { catalog, sent } = catalogThatCancels(['ConditionalCheckFailed', 'None']);
    await expect(catalog.recordGeneration(generation)).resolves.toBeUndefined();
    expect(sent).toContain('UpdateCommand'); // went on to record the generation on the safe
  });

  it.each([['ThrottlingError'], ['TransactionConflict'], ['ProvisionedThroughputExceeded']])(
    'throws when the transaction was cancelled for %s, recording nothing after it',
    async (code) => {
      const { catalog, sent } = catalogThatCancels([code, 'None']);
      await expect(catalog.recordGeneration(generation)).rejects.toBeInstanceOf(TransactionCanceledException);
      expect(sent).not.toContain('UpdateCommand');
    },
  );
});
