import { describe, expect, it } from 'vitest';
import type { ObjectCreatedEvent } from '#core/s3-event.ts';
import { recordArrival } from '../../../../functions/ingest/record-arrival.ts';
import { MemoryUploadLog } from '../../../support/fakes/memory-upload-log.ts';

function created(key: string, bucket = 'safes-bucket'): ObjectCreatedEvent {
  return {
    source: 'aws.s3',
    'detail-type': 'Object Created',
    time: '2026-11-23T00:00:00Z',
    detail: { bucket: { name: bucket }, object: { key, size: 10, etag: 'abc' } },
  };
}

describe('recordArrival', () => {
  it('records an object of the layout under its safe, idempotently', async () => {
    const uploads = new MemoryUploadLog();
    const deps = { uploads, bucket: 'safes-bucket' };
    const first = await recordArrival(deps, created('safes/s1/rp/0000000001.json'));
    await recordArrival(deps, created('safes/s1/rp/0000000001.json'));
    expect(first).toEqual({ outcome: 'recorded', kind: 'manifest', safe: 's1' });
    expect(await uploads.listObjects('s1')).toHaveLength(1);
    expect(await uploads.listQuarantined()).toEqual([]);
  });

  it('quarantines a key outside the layout with the reason, deleting nothing', async () => {
    const uploads = new MemoryUploadLog();
    const r = await recordArrival({ uploads, bucket: 'safes-bucket' }, created('safes/s1/../s2/safe.json'));
    expect(r.outcome).toBe('quarantined');
    const [q] = await uploads.listQuarantined();
    expect(q?.key).toBe('safes/s1/../s2/safe.json');
    expect(q?.reason).toMatch(/bad key/);
  });

  it('quarantines an event of another bucket', async () => {
    const uploads = new MemoryUploadLog();
    const r = await recordArrival({ uploads, bucket: 'safes-bucket' }, created('safes/s1/safe.json', 'evil'));
    expect(r).toMatchObject({ outcome: 'quarantined', reason: expect.stringMatching(/bucket evil/) });
    expect(await uploads.listObjects('s1')).toEqual([]);
  });

  it('lets catalog failures propagate so SQS retries the message', async () => {
    const uploads = new MemoryUploadLog();
    uploads.failNext = new Error('throttled');
    await expect(
      recordArrival({ uploads, bucket: 'safes-bucket' }, created('safes/s1/safe.json')),
    ).rejects.toThrow('throttled');
  });
});
