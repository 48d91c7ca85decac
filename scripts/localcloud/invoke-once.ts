/**
 * Runs one invocation of a deployed function in a process of its own, as one Lambda execution
 * environment would: the deployed bundle, the function's environment, a context. Used where a test
 * must be able to kill a function mid-invocation (SIGKILL), as Lambda does at a timeout or a crash.
 *
 *   node scripts/localcloud/invoke-once.ts <spec.json>
 *
 * spec.json: { bundleDir, handler, env, event, functionName, timeoutSeconds }. The result is printed
 * as JSON on stdout; a handler that throws exits 1 with the error on stderr.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

interface Spec {
  readonly bundleDir: string;
  readonly handler: string;
  readonly env: Record<string, string>;
  readonly event: unknown;
  readonly functionName: string;
  readonly timeoutSeconds: number;
}

const spec = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as Spec;
Object.assign(process.env, spec.env);
const dot = spec.handler.lastIndexOf('.');
const base = spec.handler.slice(0, dot);
const file = ['.mjs', '.js', '.cjs']
  .map((ext) => join(spec.bundleDir, base + ext))
  .find((f) => existsSync(f));
if (!file) throw new Error(`handler file ${base}.{mjs,js,cjs} not found in ${spec.bundleDir}`);
const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
const fn = mod[spec.handler.slice(dot + 1)] as (event: unknown, context: unknown) => Promise<unknown>;
const deadline = Date.now() + spec.timeoutSeconds * 1000;
const context = {
  functionName: spec.functionName,
  functionVersion: '$LATEST',
  invokedFunctionArn: `arn:aws:lambda:local:000000000000:function:${spec.functionName}`,
  memoryLimitInMB: '1024',
  awsRequestId: `local-${process.pid}-${Date.now()}`,
  logGroupName: `/aws/lambda/${spec.functionName}`,
  logStreamName: 'local',
  callbackWaitsForEmptyEventLoop: true,
  getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  done: () => undefined,
  fail: () => undefined,
  succeed: () => undefined,
};
try {
  const result = await fn(spec.event, context);
  process.stdout.write(`${JSON.stringify(result ?? null)}\n`);
  process.exit(0);
} catch (e) {
  process.stderr.write(`${(e as Error).name}: ${(e as Error).message}\n`);
  process.exit(1);
}
