/**
 * Catalog on one DynamoDB table with string keys pk/sk and a sparse GSI `byTime`
 * (gsi1pk/gsi1sk) over committed RPs. Schema and access patterns: docs/FORMAT.md "Catalog".
 *
 *   pk = SAFES          sk = SAFE#<safe>                     the safe: newest RP, counters, RPO target
 *   pk = SAFE#<safe>    sk = RP#<rp:010>                     an RP: state, devices, segment count, bytes
 *   pk = SAFE#<safe>    sk = SEG#<segment id>                a segment: key, bytes, frames, live bytes,
 *                                                             condemnedIn (while garbage), deletedAt
 *   pk = SAFE#<safe>    sk = WAIT#<parent:010>#<rp:010>      an RP waiting for its parent
 *   pk = QUARANTINE     sk = <object key>                    an invalid upload with the reason
 *   GSI byTime: gsi1pk = SAFE#<safe>, gsi1sk = <createdAt ISO>#<rp:010> (committed RPs only)
 */
import { ConditionalCheckFailedException, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import {
  BatchGetCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  type QueryCommandInput,
  TransactWriteCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import {
  CATALOG_INDEX_BY_TIME,
  type Catalog,
  type CommitOutcome,
  type ExpiredRpRecord,
  type GenerationRecord,
  type QuarantineRecord,
  type RpRecord,
  type SafeRecord,
  type SegmentRecord,
  type WaitingChild,
} from '#core/ports/catalog.ts';

const pad = (n: number): string => String(n).padStart(10, '0');
const safePk = (safe: string): string => `SAFE#${safe}`;
const rpSk = (rp: number): string => `RP#${pad(rp)}`;
const waitSk = (parent: number, rp: number): string => `WAIT#${pad(parent)}#${pad(rp)}`;
const SAFES = 'SAFES';
const QUARANTINE = 'QUARANTINE';
const PARALLEL = 8;

type Item = Record<string, unknown>;

function strip<T>(item: Item, drop: readonly string[]): T {
  const out: Item = {};
  for (const [k, v] of Object.entries(item)) if (!drop.includes(k)) out[k] = v;
  return out as T;
}
const KEYS = ['pk', 'sk', 'gsi1pk', 'gsi1sk'] as const;

const COUNTERS = ['committedRps', 'storedBytes', 'quarantined'] as const;

/**
 * The update of a safe item: creates it on first sight (name, first-seen time, zero counters),
 * adds to the counters in `add`, and sets `set` (`attr = :value` clauses over `values`).
 */
function safeItemUpdate(
  safe: string,
  now: string,
  add: Partial<Record<(typeof COUNTERS)[number], number>>,
  set: readonly string[] = [],
  values: Record<string, unknown> = {},
): { Key: Item; UpdateExpression: string; ExpressionAttributeValues: Record<string, unknown> } {
  const defaults = COUNTERS.filter((c) => add[c] === undefined);
  const sets = [
    'safe = :s',
    'firstSeenAt = if_not_exists(firstSeenAt, :now)',
    ...defaults.map((c) => `${c} = if_not_exists(${c}, :zero)`),
    ...set,
  ];
  const adds = Object.keys(add).map((c) => `${c} :add_${c}`);
  return {
    Key: { pk: SAFES, sk: `SAFE#${safe}` },
    UpdateExpression: `SET ${sets.join(', ')}${adds.length ? ` ADD ${adds.join(', ')}` : ''}`,
    ExpressionAttributeValues: {
      ':s': safe,
      ':now': now,
      ...(defaults.length ? { ':zero': 0 } : {}),
      ...Object.fromEntries(Object.entries(add).map(([c, v]) => [`:add_${c}`, v])),
      ...values,
    },
  };
}

/** Counts what the adapter wrote, for the per-RP cost figures. */
export interface WriteStats {
  requests: number;
  items: number;
}

export class DynamoDbCatalog implements Catalog {
  readonly writes: WriteStats = { requests: 0, items: 0 };
  private readonly doc: DynamoDBDocumentClient;
  private readonly table: string;

  constructor(doc: DynamoDBDocumentClient, table: string) {
    this.doc = doc;
    this.table = table;
  }

  private count(items: number): void {
    this.writes.requests++;
    this.writes.items += items;
  }

  async getSafe(safe: string): Promise<SafeRecord | undefined> {
    const r = await this.doc.send(
      new GetCommand({ TableName: this.table, Key: { pk: SAFES, sk: `SAFE#${safe}` } }),
    );
    return r.Item ? strip<SafeRecord>(r.Item, KEYS) : undefined;
  }

  async listSafes(): Promise<SafeRecord[]> {
    const items = await this.queryAll({
      KeyConditionExpression: 'pk = :pk',
      ExpressionAttributeValues: { ':pk': SAFES },
    });
    return items.map((i) => strip<SafeRecord>(i, KEYS));
  }

  async setRpoTarget(safe: string, seconds: number, now: string): Promise<void> {
    this.count(1);
    await this.doc.send(
      new UpdateCommand({
        TableName: this.table,
        ...safeItemUpdate(safe, now, {}, ['rpoTargetSeconds = :t'], { ':t': seconds }),
      }),
    );
  }

  async getRp(safe: string, rp: number): Promise<RpRecord | undefined> {
    const r = await this.doc.send(
      new GetCommand({ TableName: this.table, Key: { pk: safePk(safe), sk: rpSk(rp) } }),
    );
    return r.Item ? strip<RpRecord>(r.Item, KEYS) : undefined;
  }

  async listRps(safe: string, opts: { fromRp?: number; limit?: number } = {}): Promise<RpRecord[]> {
    const items = await this.queryAll(
      {
        KeyConditionExpression: 'pk = :pk AND sk BETWEEN :a AND :b',
        ExpressionAttributeValues: { ':pk': safePk(safe), ':a': rpSk(opts.fromRp ?? 1), ':b': 'RP#~' },
      },
      opts.limit,
    );
    return items.map((i) => strip<RpRecord>(i, KEYS));
  }

  async rpAtOrBefore(safe: string, time: string): Promise<RpRecord | undefined> {
    const r = await this.doc.send(
      new QueryCommand({
        TableName: this.table,
        IndexName: CATALOG_INDEX_BY_TIME,
        KeyConditionExpression: 'gsi1pk = :pk AND gsi1sk <= :t',
        ExpressionAttributeValues: { ':pk': safePk(safe), ':t': `${time}#~` },
        ScanIndexForward: false,
        Limit: 1,
      }),
    );
    const hit = r.Items?.[0];
    return hit ? strip<RpRecord>(hit, KEYS) : undefined;
  }

  async getSegments(safe: string, ids: readonly string[]): Promise<Map<string, SegmentRecord>> {
    const out = new Map<string, SegmentRecord>();
    const unique = [...new Set(ids)];
    for (let i = 0; i < unique.length; i += 100) {
      let keys: Item[] | undefined = unique
        .slice(i, i + 100)
        .map((id) => ({ pk: safePk(safe), sk: `SEG#${id}` }));
      for (let attempt = 0; keys && keys.length > 0; attempt++) {
        if (attempt > 0) await new Promise((r) => setTimeout(r, Math.min(1000, 50 * 2 ** attempt)));
        const r = await this.doc.send(
          new BatchGetCommand({ RequestItems: { [this.table]: { Keys: keys } } }),
        );
        for (const item of r.Responses?.[this.table] ?? []) {
          const s = strip<SegmentRecord>(item, KEYS);
          out.set(s.id, s);
        }
        keys = r.UnprocessedKeys?.[this.table]?.Keys as Item[] | undefined;
      }
    }
    return out;
  }

  async putSegments(segments: readonly SegmentRecord[]): Promise<void> {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < segments.length) {
        const s = segments[next++]!;
        this.count(1);
        try {
          await this.doc.send(
            new PutCommand({
              TableName: this.table,
              Item: { pk: safePk(s.safe), sk: `SEG#${s.id}`, ...s },
              ConditionExpression: 'attribute_not_exists(pk)',
            }),
          );
        } catch (e) {
          if (!(e instanceof ConditionalCheckFailedException)) throw e;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL, segments.length) }, worker));
  }

  async commitRp(rp: RpRecord & { state: 'committed' }): Promise<CommitOutcome> {
    for (let advanceNewest = true; ; advanceNewest = false) {
      try {
        await this.commitTransaction(rp, advanceNewest);
        return 'committed';
      } catch (e) {
        if (!(e instanceof TransactionCanceledException)) throw e;
        const [rpReason, safeReason] = (e.CancellationReasons ?? []).map((r) => r.Code);
        if (rpReason === 'ConditionalCheckFailed') return 'already-committed';
        // An older RP committing after a newer one: record it without moving the newest RP back.
        if (safeReason === 'ConditionalCheckFailed' && advanceNewest) continue;
        throw e;
      }
    }
  }

  private async commitTransaction(rp: RpRecord, advanceNewest: boolean): Promise<void> {
    const items = [
      {
        Put: {
          TableName: this.table,
          Item: {
            pk: safePk(rp.safe),
            sk: rpSk(rp.rp),
            gsi1pk: safePk(rp.safe),
            gsi1sk: `${rp.createdAt}#${pad(rp.rp)}`,
            ...rp,
          },
          // never over a committed RP, nor over one a compaction merged away
          ConditionExpression: 'attribute_not_exists(pk) OR NOT (#state IN (:committed, :expired))',
          ExpressionAttributeNames: { '#state': 'state' },
          ExpressionAttributeValues: { ':committed': 'committed', ':expired': 'expired' },
        },
      },
      {
        Update: {
          TableName: this.table,
          ...safeItemUpdate(
            rp.safe,
            rp.updatedAt,
            { committedRps: 1, storedBytes: rp.storedBytes ?? 0 },
            advanceNewest ? ['newestRp = :rp', 'newestRpCreatedAt = :t'] : [],
            advanceNewest ? { ':rp': rp.rp, ':t': rp.createdAt } : {},
          ),
          ConditionExpression: advanceNewest ? 'attribute_not_exists(newestRp) OR newestRp < :rp' : undefined,
        },
      },
      ...(rp.parent !== null
        ? [{ Delete: { TableName: this.table, Key: { pk: safePk(rp.safe), sk: waitSk(rp.parent, rp.rp) } } }]
        : []),
    ];
    this.count(items.length);
    await this.doc.send(new TransactWriteCommand({ TransactItems: items }));
  }

  async markWaiting(rp: RpRecord & { state: 'waiting' }): Promise<void> {
    if (rp.parent === null) throw new Error(`RP ${rp.rp} of ${rp.safe} has no parent to wait for`);
    this.count(1);
    await this.doc.send(
      new PutCommand({
        TableName: this.table,
        Item: {
          pk: safePk(rp.safe),
          sk: waitSk(rp.parent, rp.rp),
          safe: rp.safe,
          rp: rp.rp,
          parent: rp.parent,
          manifestKey: rp.manifestKey,
        },
      }),
    );
    await this.putUnlessCommitted(rp);
    await this.touchSafe(rp.safe, rp.updatedAt, 0);
  }

  async waitingChildren(safe: string, parent: number): Promise<WaitingChild[]> {
    const items = await this.queryAll({
      KeyConditionExpression: 'pk = :pk AND begins_with(sk, :p)',
      ExpressionAttributeValues: { ':pk': safePk(safe), ':p': `WAIT#${pad(parent)}#` },
    });
    return items.map((i) => strip<WaitingChild>(i, KEYS));
  }

  async quarantineUpload(q: QuarantineRecord): Promise<void> {
    this.count(1);
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.table,
          Item: { pk: QUARANTINE, sk: q.key, ...q },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
    } catch (e) {
      if (e instanceof ConditionalCheckFailedException) return; // already quarantined
      throw e;
    }
    if (q.safe === undefined) return;
    if (q.rp !== undefined) {
      await this.putUnlessCommitted({
        safe: q.safe,
        rp: q.rp,
        state: 'quarantined',
        parent: null,
        updatedAt: q.quarantinedAt,
        manifestKey: q.key,
        reason: q.reason,
      });
    }
    await this.touchSafe(q.safe, q.quarantinedAt, 1);
  }

  /** Marks segments condemned (with the generation) and unmarks revived ones; only existing items. */
  private async segmentStates(
    safe: string,
    condemned: GenerationRecord['condemned'],
    revived: readonly string[],
  ): Promise<void> {
    const updates = [
      ...condemned.map((c) => ({ id: c.id, expr: 'SET condemnedIn = :g', values: { ':g': c.generation } })),
      ...revived.map((id) => ({ id, expr: 'REMOVE condemnedIn', values: undefined })),
    ];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < updates.length) {
        const u = updates[next++]!;
        this.count(1);
        try {
          await this.doc.send(
            new UpdateCommand({
              TableName: this.table,
              Key: { pk: safePk(safe), sk: `SEG#${u.id}` },
              UpdateExpression: u.expr,
              ConditionExpression: 'attribute_exists(pk)',
              ...(u.values ? { ExpressionAttributeValues: u.values } : {}),
            }),
          );
        } catch (e) {
          if (!(e instanceof ConditionalCheckFailedException)) throw e; // a segment ingest never saw
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL, updates.length) }, worker));
  }

  async markSegmentsDeleted(safe: string, ids: readonly string[], at: string): Promise<void> {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < ids.length) {
        const id = ids[next++]!;
        this.count(1);
        try {
          await this.doc.send(
            new UpdateCommand({
              TableName: this.table,
              Key: { pk: safePk(safe), sk: `SEG#${id}` },
              UpdateExpression: 'SET deletedAt = if_not_exists(deletedAt, :at)',
              ConditionExpression: 'attribute_exists(pk)',
              ExpressionAttributeValues: { ':at': at },
            }),
          );
        } catch (e) {
          if (!(e instanceof ConditionalCheckFailedException)) throw e;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL, ids.length) }, worker));
  }

  /**
   * Expires a committed RP (it leaves the committed set and the time index); false when the RP was
   * not committed (already expired by a rerun, or never committed). Any other failure (throttling,
   * a conflict with another transaction) is not "done" and is thrown, so the caller is retried.
   */
  private async expireCommitted(safe: string, rp: number, generation: number, at: string): Promise<boolean> {
    this.count(2);
    try {
      await this.doc.send(
        new TransactWriteCommand({
          TransactItems: [
            {
              Update: {
                TableName: this.table,
                Key: { pk: safePk(safe), sk: rpSk(rp) },
                UpdateExpression:
                  'SET #state = :expired, updatedAt = :at, expiredBy = :g REMOVE gsi1pk, gsi1sk',
                ConditionExpression: '#state = :committed',
                ExpressionAttributeNames: { '#state': 'state' },
                ExpressionAttributeValues: {
                  ':expired': 'expired',
                  ':committed': 'committed',
                  ':at': at,
                  ':g': generation,
                },
              },
            },
            { Update: { TableName: this.table, ...safeItemUpdate(safe, at, { committedRps: -1 }) } },
          ],
        }),
      );
      return true;
    } catch (e) {
      if (!(e instanceof TransactionCanceledException)) throw e;
      if ((e.CancellationReasons ?? [])[0]?.Code !== 'ConditionalCheckFailed') throw e;
      return false;
    }
  }

  async expireRp(e: ExpiredRpRecord): Promise<void> {
    // each round settles it unless a commit or another expiry races it; then the next round sees that
    for (let round = 0; round < 5; round++) {
      const cur = await this.getRp(e.safe, e.rp);
      if (cur?.state === 'expired' || cur?.state === 'quarantined') return;
      if (cur?.state === 'committed') {
        if (await this.expireCommitted(e.safe, e.rp, e.generation, e.at)) return;
        continue;
      }
      // not committed (absent, or waiting for its parent): recorded expired, and it waits no more
      const item: Item = {
        pk: safePk(e.safe),
        sk: rpSk(e.rp),
        safe: e.safe,
        rp: e.rp,
        state: 'expired',
        parent: e.parent,
        updatedAt: e.at,
        manifestKey: e.manifestKey,
        expiredBy: e.generation,
        ...(e.createdAt !== undefined ? { createdAt: e.createdAt } : {}),
      };
      this.count(e.parent !== null ? 2 : 1);
      try {
        await this.doc.send(
          new TransactWriteCommand({
            TransactItems: [
              {
                Put: {
                  TableName: this.table,
                  Item: item,
                  ConditionExpression: 'attribute_not_exists(pk) OR #state = :waiting',
                  ExpressionAttributeNames: { '#state': 'state' },
                  ExpressionAttributeValues: { ':waiting': 'waiting' },
                },
              },
              ...(e.parent !== null
                ? [
                    {
                      Delete: {
                        TableName: this.table,
                        Key: { pk: safePk(e.safe), sk: waitSk(e.parent, e.rp) },
                      },
                    },
                  ]
                : []),
            ],
          }),
        );
        await this.touchSafe(e.safe, e.at, 0);
        return;
      } catch (err) {
        if (!(err instanceof TransactionCanceledException)) throw err;
        if ((err.CancellationReasons ?? [])[0]?.Code !== 'ConditionalCheckFailed') throw err;
      }
    }
    throw new Error(`RP ${e.rp} of safe ${e.safe}: its state kept changing while it was being expired`);
  }

  async recordGeneration(g: GenerationRecord): Promise<void> {
    await this.putSegments(g.written);
    for (const rp of g.expired) {
      if (await this.expireCommitted(g.safe, rp, g.generation, g.at)) continue;
      // not committed: already expired (a rerun), or waiting for its parent (expired too)
      const cur = await this.getRp(g.safe, rp);
      if (cur?.state !== 'waiting') continue;
      await this.expireRp({
        safe: g.safe,
        rp,
        parent: cur.parent,
        generation: g.generation,
        manifestKey: cur.manifestKey,
        ...(cur.createdAt !== undefined ? { createdAt: cur.createdAt } : {}),
        at: g.at,
      });
    }
    await this.segmentStates(g.safe, g.condemned, g.revived);
    this.count(1);
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.table,
          ...safeItemUpdate(g.safe, g.at, {}, ['generation = :g', 'compactedUpTo = :u', 'retention = :r'], {
            ':g': g.generation,
            ':u': g.upTo,
            ':r': g.retention,
          }),
          ConditionExpression: 'attribute_not_exists(generation) OR generation < :g',
        }),
      );
    } catch (e) {
      if (!(e instanceof ConditionalCheckFailedException)) throw e;
    }
  }

  async listQuarantined(safe?: string): Promise<QuarantineRecord[]> {
    const items = await this.queryAll({
      KeyConditionExpression: 'pk = :pk',
      ...(safe !== undefined
        ? { FilterExpression: 'safe = :s', ExpressionAttributeValues: { ':pk': QUARANTINE, ':s': safe } }
        : { ExpressionAttributeValues: { ':pk': QUARANTINE } }),
    });
    return items.map((i) => strip<QuarantineRecord>(i, KEYS));
  }

  /** Writes a waiting or quarantined RP record; a committed or expired RP is left as it is. */
  private async putUnlessCommitted(rp: RpRecord): Promise<void> {
    this.count(1);
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.table,
          Item: { pk: safePk(rp.safe), sk: rpSk(rp.rp), ...rp },
          ConditionExpression: 'attribute_not_exists(pk) OR NOT (#state IN (:committed, :expired))',
          ExpressionAttributeNames: { '#state': 'state' },
          ExpressionAttributeValues: { ':committed': 'committed', ':expired': 'expired' },
        }),
      );
    } catch (e) {
      if (!(e instanceof ConditionalCheckFailedException)) throw e;
    }
  }

  /** Makes sure the safe is listed (so a silent or failing safe still shows lag). */
  private async touchSafe(safe: string, now: string, quarantined: number): Promise<void> {
    this.count(1);
    await this.doc.send(
      new UpdateCommand({ TableName: this.table, ...safeItemUpdate(safe, now, { quarantined }) }),
    );
  }

  private async queryAll(q: Omit<QueryCommandInput, 'TableName'>, limit?: number): Promise<Item[]> {
    const out: Item[] = [];
    let start: Item | undefined;
    do {
      const r = await this.doc.send(
        new QueryCommand({
          TableName: this.table,
          ...q,
          ExclusiveStartKey: start,
          Limit: limit ? limit - out.length : undefined,
        }),
      );
      out.push(...(r.Items ?? []));
      start = r.LastEvaluatedKey;
    } while (start && (!limit || out.length < limit));
    return out;
  }
}
