/**
 * Resolves the CloudFormation intrinsics our template uses (Ref, Fn::GetAtt, Fn::Join, Fn::Sub,
 * pseudo parameters) against a deployed stack, so the harness can re-apply properties that the
 * emulator dropped with the values CloudFormation would have used.
 */
import type { CfnTemplate } from './synth.ts';

export interface DeployedStack {
  readonly region: string;
  readonly account: string;
  readonly template: CfnTemplate;
  /** Logical id → physical id, for the resources the emulator created. */
  readonly physical: Readonly<Record<string, string>>;
}

function lastSegment(s: string): string {
  return s.slice(s.lastIndexOf('/') + 1);
}

function ref(s: DeployedStack, name: string): string {
  const pseudo: Record<string, string> = {
    'AWS::Region': s.region,
    'AWS::AccountId': s.account,
    'AWS::Partition': 'aws',
    'AWS::URLSuffix': 'amazonaws.com',
    'AWS::NoValue': '',
  };
  if (name in pseudo) return pseudo[name]!;
  const id = s.physical[name];
  if (id === undefined) throw new Error(`cannot resolve Ref ${name}: not created`);
  return id;
}

function getAtt(s: DeployedStack, logical: string, attr: string): string {
  const type = s.template.Resources[logical]?.Type;
  const id = ref(s, logical);
  const { region: r, account: a } = s;
  switch (`${type}.${attr}`) {
    case 'AWS::S3::Bucket.Arn':
      return `arn:aws:s3:::${id}`;
    case 'AWS::SQS::Queue.Arn':
      return `arn:aws:sqs:${r}:${a}:${lastSegment(id)}`;
    case 'AWS::SQS::Queue.QueueName':
      return lastSegment(id);
    case 'AWS::SQS::Queue.QueueUrl':
      return id;
    case 'AWS::KMS::Key.Arn':
      return id.startsWith('arn:') ? id : `arn:aws:kms:${r}:${a}:key/${id}`;
    case 'AWS::Events::Rule.Arn':
      return id.startsWith('arn:') ? id : `arn:aws:events:${r}:${a}:rule/${id}`;
    case 'AWS::DynamoDB::Table.Arn':
      return `arn:aws:dynamodb:${r}:${a}:table/${id}`;
    case 'AWS::Lambda::Function.Arn':
      return id.startsWith('arn:') ? id : `arn:aws:lambda:${r}:${a}:function:${id}`;
    case 'AWS::IAM::Role.Arn':
      return id.startsWith('arn:') ? id : `arn:aws:iam::${a}:role/${id}`;
    default:
      throw new Error(`cannot resolve Fn::GetAtt ${logical}.${attr} (${type})`);
  }
}

/** Returns `value` with every intrinsic replaced by its deployed value. */
export function resolve(s: DeployedStack, value: unknown): unknown {
  if (Array.isArray(value)) return value.map((v) => resolve(s, v));
  if (value === null || typeof value !== 'object') return value;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj);
  if (keys.length === 1) {
    const [k] = keys as [string];
    const arg = obj[k];
    if (k === 'Ref') return ref(s, String(arg));
    if (k === 'Fn::GetAtt') {
      const [logical, attr] = Array.isArray(arg) ? arg : String(arg).split('.');
      return getAtt(s, String(logical), String(attr));
    }
    if (k === 'Fn::Join') {
      const [sep, parts] = arg as [string, unknown[]];
      return (resolve(s, parts) as unknown[]).join(sep);
    }
    if (k === 'Fn::Sub') {
      const [tpl, vars] = typeof arg === 'string' ? [arg, {}] : (arg as [string, Record<string, unknown>]);
      return tpl.replace(/\$\{([^}]+)\}/g, (_, name: string) => {
        if (name in vars) return String(resolve(s, vars[name]));
        return name.includes('.') ? getAtt(s, ...(name.split('.') as [string, string])) : ref(s, name);
      });
    }
    if (k.startsWith('Fn::')) throw new Error(`intrinsic ${k} is not supported by the local harness`);
  }
  return Object.fromEntries(keys.map((k) => [k, resolve(s, obj[k])]));
}
