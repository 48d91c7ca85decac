/**
 * UploadLog on a DynamoDB catalog table (pk/sk strings; schema in docs/FORMAT.md "Catalog").
 *   pk = SAFE#<safe>   sk = OBJ#<key>     an object that arrived and follows the layout
 *   pk = QUARANTINE    sk = <key>         an object that did not, with the reason
 */
import { type DynamoDBDocumentClient, PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import type { ArrivedObject, QuarantinedObject, UploadLog } from '#core/ports/upload-log.ts';

export class DynamoDbUploadLog implements UploadLog {
  private readonly doc: DynamoDBDocumentClient;
  private readonly table: string;

  constructor(doc: DynamoDBDocumentClient, table: string) {
    this.doc = doc;
    this.table = table;
  }

  async recordObject(o: ArrivedObject): Promise<void> {
    await this.doc.send(
      new PutCommand({ TableName: this.table, Item: { pk: `SAFE#${o.safe}`, sk: `OBJ#${o.key}`, ...o } }),
    );
  }

  async quarantine(q: QuarantinedObject): Promise<void> {
    await this.doc.send(
      new PutCommand({ TableName: this.table, Item: { pk: 'QUARANTINE', sk: q.key, ...q } }),
    );
  }

  async listObjects(safe: string): Promise<ArrivedObject[]> {
    const items = await this.queryAll(`SAFE#${safe}`, 'OBJ#');
    return items.map((i) => ({
      safe: String(i.safe),
      key: String(i.key),
      kind: String(i.kind),
      size: Number(i.size),
      etag: String(i.etag),
      createdAt: String(i.createdAt),
    }));
  }

  async listQuarantined(): Promise<QuarantinedObject[]> {
    const items = await this.queryAll('QUARANTINE', '');
    return items.map((i) => ({
      key: String(i.key),
      reason: String(i.reason),
      size: Number(i.size),
      createdAt: String(i.createdAt),
    }));
  }

  private async queryAll(pk: string, skPrefix: string): Promise<Record<string, unknown>[]> {
    const out: Record<string, unknown>[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const r = await this.doc.send(
        new QueryCommand({
          TableName: this.table,
          KeyConditionExpression: skPrefix ? 'pk = :pk AND begins_with(sk, :p)' : 'pk = :pk',
          ExpressionAttributeValues: skPrefix ? { ':pk': pk, ':p': skPrefix } : { ':pk': pk },
          ExclusiveStartKey: start,
        }),
      );
      out.push(...(r.Items ?? []));
      start = r.LastEvaluatedKey;
    } while (start);
    return out;
  }
}
