/** Publishes the synthesized file assets (function bundles, the template) into the local cloud. */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { CreateBucketCommand, HeadBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { zipSync } from 'fflate';
import type { CloudClients } from './clients.ts';
import type { FileAsset } from './synth.ts';

/** Fills CDK's `${AWS::AccountId}`-style placeholders in asset bucket names and keys. */
export function placeholders(s: string, account: string, region: string): string {
  const values: Record<string, string> = { AccountId: account, Region: region, Partition: 'aws' };
  return s.replace(/\$\{AWS::(AccountId|Region|Partition)\}/g, (_, name: string) => values[name]!);
}

function zipDirectory(dir: string): Uint8Array {
  const files: Record<string, Uint8Array> = {};
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else files[relative(dir, p)] = readFileSync(p);
    }
  };
  walk(dir);
  return zipSync(files, { level: 6, mtime: new Date('2020-01-01T00:00:00Z') });
}

async function ensureBucket(c: CloudClients, bucket: string): Promise<void> {
  try {
    await c.s3.send(new HeadBucketCommand({ Bucket: bucket }));
  } catch {
    await c.s3.send(new CreateBucketCommand({ Bucket: bucket }));
  }
}

export async function publishAssets(
  c: CloudClients,
  assets: readonly FileAsset[],
  account: string,
  region: string,
): Promise<void> {
  for (const a of assets) {
    const bucket = placeholders(a.bucketName, account, region);
    await ensureBucket(c, bucket);
    const body = a.packaging === 'zip' ? zipDirectory(a.sourcePath) : readFileSync(a.sourcePath);
    await c.s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: placeholders(a.objectKey, account, region), Body: body }),
    );
  }
}
