import { describe, expect, it } from 'vitest';
import { BadInputError } from '#core/errors.ts';
import { parseObjectCreated } from '#core/s3-event.ts';

const event = {
  version: '0',
  source: 'aws.s3',
  'detail-type': 'Object Created',
  time: '2026-11-23T00:00:00Z',
  detail: { bucket: { name: 'b' }, object: { key: 'safes/a/safe.json', size: 2, etag: 'e' } },
};

describe('parseObjectCreated', () => {
  it('parses an EventBridge S3 Object Created event', () => {
    const e = parseObjectCreated(JSON.stringify(event), 'm1');
    expect(e.detail.object.key).toBe('safes/a/safe.json');
    expect(e.detail.bucket.name).toBe('b');
  });

  it('names the message and the fault for a body that is not JSON', () => {
    expect(() => parseObjectCreated('{oops', 'message m1')).toThrow(/message m1: message body is not JSON/);
  });

  it('names the missing field of a foreign event', () => {
    const foreign = { ...event, detail: { bucket: { name: 'b' } } };
    expect(() => parseObjectCreated(JSON.stringify(foreign), 'm2')).toThrow(BadInputError);
    expect(() => parseObjectCreated(JSON.stringify(foreign), 'm2')).toThrow(/detail\.object/);
  });

  it('rejects events of another detail type', () => {
    const deleted = { ...event, 'detail-type': 'Object Deleted' };
    expect(() => parseObjectCreated(JSON.stringify(deleted), 'm3')).toThrow(/detail-type/);
  });
});
