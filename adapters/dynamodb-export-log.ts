/**
 * ExportLog in the catalog table: pk = SAFE#<safe>, sk = EXPORT#<exportId>; part ETags in a map
 * attribute, the count of distinct parts kept by a conditional ADD (a retried part counts once).
 */
import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, GetCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { ExportLog, ExportRecord } from '#core/ports/export-log.ts';

const key = (safe: string, exportId: string) => ({ pk: `SAFE#${safe}`, sk: `EXPORT#${exportId}` });

export class DynamoDbExportLog implements ExportLog {
  private readonly doc: DynamoDBDocumentClient;
  private readonly table: string;

  constructor(doc: DynamoDBDocumentClient, table: string) {
    this.doc = doc;
    this.table = table;
  }

  async startExport(e: ExportRecord): Promise<void> {
    await this.doc.send(
      new PutCommand({
        TableName: this.table,
        Item: { ...key(e.safe, e.exportId), ...e, etags: {}, recorded: 0 },
        ConditionExpression: 'attribute_not_exists(pk)',
      }),
    );
  }

  async getExport(safe: string, exportId: string): Promise<ExportRecord | undefined> {
    const r = await this.doc.send(
      new GetCommand({ TableName: this.table, Key: key(safe, exportId), ConsistentRead: true }),
    );
    if (!r.Item) return undefined;
    const { pk: _pk, sk: _sk, recorded: _r, ...rest } = r.Item;
    return rest as ExportRecord;
  }

  async recordPart(safe: string, exportId: string, part: number, etag: string): Promise<number> {
    try {
      const r = await this.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: key(safe, exportId),
          UpdateExpression: 'SET etags.#p = :e ADD recorded :one',
          ConditionExpression: 'attribute_exists(pk) AND attribute_not_exists(etags.#p)',
          ExpressionAttributeNames: { '#p': String(part) },
          ExpressionAttributeValues: { ':e': etag, ':one': 1 },
          ReturnValues: 'ALL_NEW',
        }),
      );
      return Number(r.Attributes?.recorded ?? 0);
    } catch (e) {
      if (!(e instanceof ConditionalCheckFailedException)) throw e;
      // this part was recorded before (a retried message): refresh its ETag, count unchanged
      const r = await this.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: key(safe, exportId),
          UpdateExpression: 'SET etags.#p = :e',
          ExpressionAttributeNames: { '#p': String(part) },
          ExpressionAttributeValues: { ':e': etag },
          ReturnValues: 'ALL_NEW',
        }),
      );
      return Number(r.Attributes?.recorded ?? 0);
    }
  }

  async finish(
    safe: string,
    exportId: string,
    state: 'complete' | 'failed',
    at: string,
    reason?: string,
  ): Promise<boolean> {
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.table,
          Key: key(safe, exportId),
          UpdateExpression: reason
            ? 'SET #s = :s, finishedAt = :at, reason = :r'
            : 'SET #s = :s, finishedAt = :at',
          ConditionExpression: '#s = :running',
          ExpressionAttributeNames: { '#s': 'state' },
          ExpressionAttributeValues: {
            ':s': state,
            ':at': at,
            ':running': 'running',
            ...(reason ? { ':r': reason } : {}),
          },
        }),
      );
      return true;
    } catch (e) {
      if (e instanceof ConditionalCheckFailedException) return false;
      throw e;
    }
  }
}
