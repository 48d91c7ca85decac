/**
 * The stack's functions running locally: one FunctionHost per function (deployed bundle, deployed
 * environment from GetFunctionConfiguration) and one QueuePoller per SQS event source mapping.
 */
import { createWriteStream, mkdirSync } from 'node:fs';
import { Writable } from 'node:stream';
import { GetFunctionConfigurationCommand } from '@aws-sdk/client-lambda';
import { cloudClients, cloudEnv } from './clients.ts';
import type { Deployment } from './deploy.ts';
import { EmfBridge } from './emf-bridge.ts';
import { type BatchOutcome, QueuePoller } from './esm-runner.ts';
import { FunctionHost } from './function-host.ts';
import { type InvokeServer, startInvokeServer } from './invoke-server.ts';

export interface LocalFunctions {
  readonly hosts: ReadonlyMap<string, FunctionHost>;
  readonly pollers: readonly QueuePoller[];
  /** Publishes the functions' EMF metrics to the emulator's CloudWatch, as CloudWatch Logs would. */
  readonly metrics: EmfBridge;
  /** Invokes a function by logical id or name (RequestResponse), as `lambda invoke` would. */
  invoke(fn: string, event: unknown): Promise<unknown>;
  /** Serves the Lambda Invoke API for the stack's functions (AWS_ENDPOINT_URL_LAMBDA points at it). */
  serveInvoke(): Promise<InvokeServer>;
  /** Invokes each scheduled function at its rate (a Scheduled Event), until close. */
  runSchedules(onResult?: (fn: string, result: unknown) => void): void;
  /** Polls every mapping until no queue has a visible message; returns the batches processed. */
  /** Polls every queue until a round receives nothing; the first round long-polls `waitSeconds`. */
  drain(maxRounds?: number, waitSeconds?: number): Promise<BatchOutcome[]>;
  close(): Promise<void>;
}

export async function startLocalFunctions(
  d: Deployment,
  opts: { logDir?: string } = {},
): Promise<LocalFunctions> {
  const c = cloudClients(d.profile);
  const hosts = new Map<string, FunctionHost>();
  const metrics = new EmfBridge(c.cloudwatch);
  const servers: InvokeServer[] = [];
  const timers: NodeJS.Timeout[] = [];
  if (opts.logDir) mkdirSync(opts.logDir, { recursive: true });
  for (const f of d.functions) {
    const cfg = await c.lambda.send(new GetFunctionConfigurationCommand({ FunctionName: f.functionName }));
    const env = {
      ...(cfg.Environment?.Variables ?? {}),
      ...cloudEnv(d.profile),
      AWS_LAMBDA_FUNCTION_NAME: f.functionName,
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(f.memoryMiB),
      AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
      AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs22.x',
      LAMBDA_TASK_ROOT: f.bundleDir,
      TZ: 'UTC',
    };
    const file = opts.logDir
      ? createWriteStream(`${opts.logDir}/${f.logicalId}.log`, { flags: 'a' })
      : undefined;
    const logSink = new Writable({
      write(chunk: Buffer, _enc, done) {
        metrics.push(chunk.toString('utf8'));
        if (file) file.write(chunk, done);
        else done();
      },
    });
    hosts.set(f.logicalId, new FunctionHost({ ...f, env, logSink }));
  }
  const pollers = d.mappings.map((m) => {
    const host = hosts.get(m.functionLogicalId);
    if (!host) throw new Error(`mapping ${m.logicalId}: function ${m.functionLogicalId} is not in the stack`);
    return new QueuePoller(c.sqs, m, (e) => host.invoke(e), d.profile.region);
  });
  const hostOf = (fn: string): FunctionHost => {
    const h = hosts.get(fn) ?? [...hosts.values()].find((x) => x.spec.functionName === fn);
    if (!h) throw new Error(`function ${fn} is not in the stack`);
    return h;
  };
  return {
    hosts,
    pollers,
    metrics,
    invoke: (fn, event) => hostOf(fn).invoke(event),
    runSchedules(onResult) {
      for (const sc of d.schedules) {
        const host = hostOf(sc.functionLogicalId);
        const fire = (): void => {
          const event = {
            version: '0',
            id: crypto.randomUUID(),
            'detail-type': 'Scheduled Event',
            source: 'aws.events',
            time: new Date().toISOString(),
            region: d.profile.region,
            resources: [sc.logicalId],
            detail: {},
          };
          host.invoke(event).then(
            (r) => onResult?.(sc.functionLogicalId, r),
            (e: Error) => onResult?.(sc.functionLogicalId, { error: e.message }),
          );
        };
        fire();
        timers.push(setInterval(fire, sc.everyMs));
      }
    },
    async serveInvoke() {
      const s = await startInvokeServer(hosts.values());
      servers.push(s);
      return s;
    },
    async drain(maxRounds = 100, waitSeconds = 0) {
      const out: BatchOutcome[] = [];
      for (let round = 0; round < maxRounds; round++) {
        // the first round may long-poll: it returns as soon as a message arrives
        const batch = await Promise.all(pollers.map((p) => p.pollOnce(round === 0 ? waitSeconds : 0)));
        const busy = batch.filter((b) => b.received > 0);
        out.push(...busy);
        if (busy.length === 0) return out;
      }
      return out;
    },
    async close() {
      for (const p of pollers) p.stop();
      for (const t of timers) clearInterval(t);
      await metrics.settle();
      await Promise.all(servers.map((s) => s.close()));
      await Promise.all([...hosts.values()].map((h) => h.close()));
      await metrics.flush();
    },
  };
}
