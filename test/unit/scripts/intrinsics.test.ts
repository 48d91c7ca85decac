import { describe, expect, it } from 'vitest';
import { type DeployedStack, resolve } from '../../../scripts/localcloud/intrinsics.ts';

const stack: DeployedStack = {
  region: 'us-east-1',
  account: '123456789012',
  template: {
    Resources: {
      B: { Type: 'AWS::S3::Bucket' },
      Q: { Type: 'AWS::SQS::Queue' },
      K: { Type: 'AWS::KMS::Key' },
    },
  },
  physical: { B: 'my-bucket', Q: 'https://sqs.us-east-1.amazonaws.com/123456789012/my-queue', K: 'k-1' },
};

describe('resolve', () => {
  it('resolves Ref, GetAtt, Join and Sub the way CloudFormation would', () => {
    expect(resolve(stack, { Ref: 'B' })).toBe('my-bucket');
    expect(resolve(stack, { 'Fn::GetAtt': ['Q', 'Arn'] })).toBe(
      'arn:aws:sqs:us-east-1:123456789012:my-queue',
    );
    expect(resolve(stack, { 'Fn::GetAtt': ['Q', 'QueueName'] })).toBe('my-queue');
    expect(resolve(stack, { 'Fn::GetAtt': ['K', 'Arn'] })).toBe('arn:aws:kms:us-east-1:123456789012:key/k-1');
    expect(resolve(stack, { 'Fn::Join': ['', [{ 'Fn::GetAtt': ['B', 'Arn'] }, '/*']] })).toBe(
      'arn:aws:s3:::my-bucket/*',
    );
    // biome-ignore lint/suspicious/noTemplateCurlyInString: CloudFormation Fn::Sub syntax, not a JS template
    expect(resolve(stack, { 'Fn::Sub': 'arn:${AWS::Partition}:x:${AWS::Region}:${B}' })).toBe(
      'arn:aws:x:us-east-1:my-bucket',
    );
  });

  it('fails loudly on what it cannot resolve', () => {
    expect(() => resolve(stack, { Ref: 'Missing' })).toThrow(/Missing/);
    expect(() => resolve(stack, { 'Fn::If': ['c', 1, 2] })).toThrow(/Fn::If/);
  });
});
