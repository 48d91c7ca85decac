/**
 * The S3 store hands the SHA-256 it computed for S3's checksum to the signer as the payload hash
 * (x-amz-content-sha256), so the body is hashed once. S3 rejects a body that does not match that
 * header and moto does not check it, so its value is checked here, on the request as it leaves
 * the SDK (a request handler that answers like S3; nothing is sent).
 */
import { createHash } from 'node:crypto';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { S3ObjectStore, signedWithChecksum } from '#adapters/s3-store.ts';
import { manifestKey } from '#core/keys.ts';

interface Sent {
  readonly headers: Record<string, string>;
}

function capturingClient(sent: Sent[]): S3Client {
  return new S3Client({
    region: 'us-east-1',
    credentials: { accessKeyId: 'k', secretAccessKey: 's' },
    endpoint: 'http://localhost:1',
    forcePathStyle: true,
    requestHandler: {
      handle: async (request: { headers: Record<string, string> }) => {
        sent.push({ headers: { ...request.headers } });
        const { Readable } = await import('node:stream');
        return {
          response: { statusCode: 200, headers: { etag: '"e"' }, body: Readable.from([]) },
        };
      },
    },
  });
}

describe('S3 uploads', () => {
  it('sign the SHA-256 of the body they send, the same as its checksum', async () => {
    const sent: Sent[] = [];
    const store = new S3ObjectStore(capturingClient(sent), 'b', 'safes/s1', 's1');
    const body = Buffer.from('a manifest body');
    await store.put(manifestKey('s1', 1), body);
    const digest = createHash('sha256').update(body).digest();
    expect(sent).toHaveLength(1);
    const h = sent[0]!.headers;
    expect(h['x-amz-content-sha256']).toBe(digest.toString('hex'));
    expect(h['x-amz-checksum-sha256']).toBe(digest.toString('base64'));
    expect(h.authorization).toMatch(/SignedHeaders=[^,]*x-amz-content-sha256/);
  });

  it('hand the signer the checksum they computed, not one of its own', async () => {
    const sent: Sent[] = [];
    const client = capturingClient(sent);
    const body = Buffer.from('body');
    const other = createHash('sha256').update('something else').digest();
    await client.send(
      signedWithChecksum(
        new PutObjectCommand({ Bucket: 'b', Key: 'k', Body: body, ChecksumSHA256: other.toString('base64') }),
      ),
    );
    // had the signer hashed the body itself, the header would be the body's SHA-256
    expect(sent[0]!.headers['x-amz-content-sha256']).toBe(other.toString('hex'));
  });
});
