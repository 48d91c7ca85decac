import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { S3ObjectStore } from '#adapters/s3-store.ts';
import { objectStoreContract, SAFE } from '../contract/object-store.contract.ts';
import { useLocalCloud } from '../support/local-cloud.ts';

const cloud = useLocalCloud();
let n = 0;

objectStoreContract('S3 (moto)', async () => {
  const bucket = `contract-${++n}`;
  await cloud.clients.s3.send(new CreateBucketCommand({ Bucket: bucket }));
  return new S3ObjectStore(cloud.clients.s3, bucket, `safes/${SAFE}`, SAFE, {
    partSize: 5 * 1024 * 1024,
    queueSize: 2,
  });
});
