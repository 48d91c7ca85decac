/**
 * Local deploy harness: synthesize the CDK app, publish its assets, CreateStack (or UpdateStack)
 * the synthesized template in the local cloud, re-apply what the emulator dropped, take the event
 * source mappings away from the emulator (the local runner plays them), and return the outputs.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type CloudFormationClient,
  CreateStackCommand,
  DescribeStackEventsCommand,
  DescribeStacksCommand,
  ListStackResourcesCommand,
  type Stack,
  UpdateStackCommand,
} from '@aws-sdk/client-cloudformation';
import { DeleteEventSourceMappingCommand, UpdateEventSourceMappingCommand } from '@aws-sdk/client-lambda';
import { PutParameterCommand } from '@aws-sdk/client-ssm';
import { placeholders, publishAssets } from './assets.ts';
import { type CloudClients, cloudClients } from './clients.ts';
import type { DeployedStack } from './intrinsics.ts';
import { resolve } from './intrinsics.ts';
import type { CloudProfile } from './profile.ts';
import { type ReapplyReport, reapplyDropped, skippedResourceName } from './reapply.ts';
import { type SynthResult, synth } from './synth.ts';

/** moto's fixed account id; LocalStack uses the same by default. */
export const LOCAL_ACCOUNT = '000000000000';
const MOTO_ACCOUNT = '123456789012';

/** An SQS → Lambda event source mapping, as the template declares it. */
export interface LocalMapping {
  readonly logicalId: string;
  readonly functionLogicalId: string;
  readonly queueUrl: string;
  readonly queueArn: string;
  readonly batchSize: number;
  readonly maximumBatchingWindowSeconds: number;
  readonly reportBatchItemFailures: boolean;
}

/** A function of the stack and where its deployed bundle lives locally. */
export interface LocalFunction {
  readonly logicalId: string;
  readonly functionName: string;
  /** Directory of the bundle that was zipped and deployed (cdk.out/asset.<hash>). */
  readonly bundleDir: string;
  /** `index.handler` → file index.mjs, export handler. */
  readonly handler: string;
  readonly timeoutSeconds: number;
  readonly memoryMiB: number;
}

/** An EventBridge schedule rule that invokes a function of the stack (moto runs no schedules). */
export interface LocalSchedule {
  readonly logicalId: string;
  readonly functionLogicalId: string;
  readonly everyMs: number;
}

export interface Deployment {
  readonly stackName: string;
  readonly profile: CloudProfile;
  readonly outputs: Record<string, string>;
  readonly functions: LocalFunction[];
  readonly mappings: LocalMapping[];
  readonly schedules: LocalSchedule[];
  readonly reapplied: ReapplyReport[];
  readonly deployMs: number;
}

async function accountOf(cfn: CloudFormationClient, profile: CloudProfile): Promise<string> {
  // The emulator's account shows in any stack id; before any stack exists, use its known default.
  const r = await cfn.send(new DescribeStacksCommand({})).catch(() => undefined);
  const id = r?.Stacks?.[0]?.StackId;
  if (id) return id.split(':')[4]!;
  return profile.name === 'moto' ? MOTO_ACCOUNT : LOCAL_ACCOUNT;
}

async function describe(cfn: CloudFormationClient, stackName: string): Promise<Stack | undefined> {
  try {
    const r = await cfn.send(new DescribeStacksCommand({ StackName: stackName }));
    return r.Stacks?.[0];
  } catch {
    return undefined;
  }
}

async function waitForStack(
  cfn: CloudFormationClient,
  stackName: string,
  timeoutMs = 300_000,
): Promise<Stack> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const s = await describe(cfn, stackName);
    const status = s?.StackStatus ?? '';
    if (s && /_COMPLETE$/.test(status) && !/ROLLBACK/.test(status)) return s;
    if (/FAILED|ROLLBACK/.test(status)) {
      const ev = await cfn.send(new DescribeStackEventsCommand({ StackName: stackName }));
      const reasons = (ev.StackEvents ?? [])
        .filter((e) => e.ResourceStatusReason)
        .map((e) => `${e.LogicalResourceId}: ${e.ResourceStatusReason}`);
      throw new Error(`stack ${stackName} ended ${status}:\n${reasons.join('\n')}`);
    }
    await sleep(250);
  }
  throw new Error(`stack ${stackName} did not finish within ${timeoutMs} ms`);
}

async function physicalIds(cfn: CloudFormationClient, stackName: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  let token: string | undefined;
  do {
    const r = await cfn.send(new ListStackResourcesCommand({ StackName: stackName, NextToken: token }));
    for (const s of r.StackResourceSummaries ?? []) {
      if (s.LogicalResourceId && s.PhysicalResourceId) out[s.LogicalResourceId] = s.PhysicalResourceId;
    }
    token = r.NextToken;
  } while (token);
  return out;
}

function templateHash(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex').slice(0, 16);
}

async function createOrUpdate(
  c: CloudClients,
  s: SynthResult,
  templateUrl: string,
  hash: string,
): Promise<void> {
  const existing = await describe(c.cfn, s.stackName);
  const params = {
    StackName: s.stackName,
    TemplateURL: templateUrl,
    Capabilities: ['CAPABILITY_IAM', 'CAPABILITY_NAMED_IAM'] as const,
    Tags: [{ Key: 'cdp:template-sha256', Value: hash }],
  };
  if (!existing) {
    await c.cfn.send(new CreateStackCommand({ ...params, Capabilities: [...params.Capabilities] }));
    return;
  }
  if (existing.Tags?.some((t) => t.Key === 'cdp:template-sha256' && t.Value === hash)) return;
  await c.cfn.send(new UpdateStackCommand({ ...params, Capabilities: [...params.Capabilities] }));
}

function localFunctions(s: SynthResult, stack: DeployedStack): LocalFunction[] {
  return Object.entries(s.template.Resources)
    .filter(([, r]) => r.Type === 'AWS::Lambda::Function')
    .map(([logicalId, r]) => {
      const p = r.Properties ?? {};
      const key = String((resolve(stack, p.Code) as { S3Key: string }).S3Key);
      const asset = s.assets.find((a) => a.packaging === 'zip' && a.objectKey === key);
      if (!asset) throw new Error(`function ${logicalId}: no local bundle for code ${key}`);
      return {
        logicalId,
        functionName: stack.physical[logicalId] ?? logicalId,
        bundleDir: asset.sourcePath,
        handler: String(p.Handler ?? 'index.handler'),
        timeoutSeconds: Number(p.Timeout ?? 3),
        memoryMiB: Number(p.MemorySize ?? 128),
      };
    });
}

function localMappings(s: SynthResult, stack: DeployedStack): LocalMapping[] {
  return Object.entries(s.template.Resources)
    .filter(([, r]) => r.Type === 'AWS::Lambda::EventSourceMapping')
    .map(([logicalId, r]) => {
      const p = r.Properties ?? {};
      const fnRef = p.FunctionName as { Ref: string };
      const arnRef = p.EventSourceArn as { 'Fn::GetAtt': [string, string] };
      const queueLogical = arnRef['Fn::GetAtt'][0];
      return {
        logicalId,
        functionLogicalId: fnRef.Ref,
        queueUrl: stack.physical[queueLogical]!,
        queueArn: String(resolve(stack, arnRef)),
        batchSize: Number(p.BatchSize ?? 10),
        maximumBatchingWindowSeconds: Number(p.MaximumBatchingWindowInSeconds ?? 0),
        reportBatchItemFailures: ((p.FunctionResponseTypes as string[] | undefined) ?? []).includes(
          'ReportBatchItemFailures',
        ),
      };
    });
}

const RATE = /^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$/;
const UNIT_MS: Record<string, number> = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };

function localSchedules(s: SynthResult): LocalSchedule[] {
  return Object.entries(s.template.Resources)
    .filter(([, r]) => r.Type === 'AWS::Events::Rule' && typeof r.Properties?.ScheduleExpression === 'string')
    .flatMap(([logicalId, r]) => {
      const m = RATE.exec(String(r.Properties!.ScheduleExpression));
      if (!m) return [];
      const everyMs = Number(m[1]) * UNIT_MS[m[2]!.replace(/s$/, '')]!;
      const targets = (r.Properties!.Targets as { Arn: { 'Fn::GetAtt'?: [string, string] } }[]) ?? [];
      return targets
        .map((t) => t.Arn['Fn::GetAtt']?.[0])
        .filter(
          (id): id is string =>
            id !== undefined && s.template.Resources[id]?.Type === 'AWS::Lambda::Function',
        )
        .map((functionLogicalId) => ({ logicalId, functionLogicalId, everyMs }));
    });
}

/** Deploys the CDK app's synthesized template into the local cloud of `profile`. */
export async function deployLocal(
  profile: CloudProfile,
  opts: { outdir?: string } = {},
): Promise<Deployment> {
  const t0 = Date.now();
  const c = cloudClients(profile);
  const s = synth(opts.outdir);
  const account = await accountOf(c.cfn, profile);
  const region = profile.region;
  await c.ssm.send(
    new PutParameterCommand({
      Name: '/cdk-bootstrap/hnb659fds/version',
      Value: '30',
      Type: 'String',
      Overwrite: true,
    }),
  );
  await publishAssets(c, s.assets, account, region);
  const tplAsset = s.assets.find((a) => a.packaging === 'file' && a.sourcePath === s.templateFile);
  if (!tplAsset) throw new Error('the synthesized template is not among the file assets');
  const templateUrl = `${profile.endpoint}/${placeholders(tplAsset.bucketName, account, region)}/${placeholders(tplAsset.objectKey, account, region)}`;
  await createOrUpdate(c, s, templateUrl, templateHash(s.templateFile));
  const deployed = await waitForStack(c.cfn, s.stackName);
  const stack: DeployedStack = {
    region,
    account,
    template: s.template,
    physical: await physicalIds(c.cfn, s.stackName),
  };
  const reapplied = await reapplyDropped(c, stack, s.stackName, {
    apply: true,
    moto: profile.name === 'moto',
  });
  const mappings = localMappings(s, stack);
  if (profile.runsLambdaLocally) {
    // moto's SQS keeps its own reference to a mapping after DeleteEventSourceMapping and goes on
    // consuming messages through it (deleting them); disabling first switches that reference off.
    for (const m of mappings) {
      const uuid = stack.physical[m.logicalId];
      if (!uuid) continue;
      await c.lambda.send(new UpdateEventSourceMappingCommand({ UUID: uuid, Enabled: false }));
      await c.lambda.send(new DeleteEventSourceMappingCommand({ UUID: uuid }));
    }
  }
  const outputs = Object.fromEntries((deployed.Outputs ?? []).map((o) => [o.OutputKey!, o.OutputValue!]));
  // moto drops outputs that refer to a resource it skipped (alarms); the harness re-created those
  // under skippedResourceName(), so resolve such outputs against that name.
  const templateOutputs = (s.template as { Outputs?: Record<string, { Value: unknown }> }).Outputs ?? {};
  for (const [name, o] of Object.entries(templateOutputs)) {
    if (outputs[name] !== undefined) continue;
    const ref = (o.Value as { Ref?: string }).Ref;
    if (ref && s.template.Resources[ref] && !stack.physical[ref]) {
      outputs[name] = skippedResourceName(s.stackName, ref);
    }
  }
  return {
    stackName: s.stackName,
    profile,
    outputs,
    functions: localFunctions(s, stack),
    mappings,
    schedules: localSchedules(s),
    reapplied,
    deployMs: Date.now() - t0,
  };
}
