/**
 * Runs a deployed Lambda function in-process, as Lambda would: its own worker thread (one
 * execution environment) with the function's deployed environment, the deployed bundle, a context
 * object, and its timeout (a timed-out environment is torn down and a fresh one started).
 */
import { randomUUID } from 'node:crypto';
import type { Writable } from 'node:stream';
import { Worker } from 'node:worker_threads';

export interface FunctionSpec {
  readonly functionName: string;
  readonly bundleDir: string;
  readonly handler: string;
  readonly timeoutSeconds: number;
  readonly memoryMiB: number;
  /** The function's environment variables plus what the runtime adds (region, credentials, endpoint). */
  readonly env: Record<string, string>;
  /** Where the function's stdout/stderr go (its "CloudWatch Logs"); discarded when absent. */
  readonly logSink?: Writable;
}

export class FunctionError extends Error {
  readonly errorType: string;
  readonly errorMessage: string;
  constructor(functionName: string, errorType: string, message: string) {
    super(`${functionName} failed: ${errorType}: ${message}`);
    this.errorType = errorType;
    this.errorMessage = message;
  }
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
}

const workerFile = new URL('./lambda-worker.ts', import.meta.url);

export class FunctionHost {
  readonly spec: FunctionSpec;
  private worker: Worker | undefined;
  private ready: Promise<void> | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(spec: FunctionSpec) {
    this.spec = spec;
  }

  /** Invokes the function with `event`; one invocation at a time (concurrency 1). */
  invoke(event: unknown): Promise<unknown> {
    const run = this.queue.then(
      () => this.invokeNow(event),
      () => this.invokeNow(event),
    );
    this.queue = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    this.ready = undefined;
    if (w) await w.terminate();
  }

  private start(): Promise<void> {
    if (this.ready) return this.ready;
    const s = this.spec;
    const w = new Worker(workerFile, {
      workerData: { bundleDir: s.bundleDir, handler: s.handler },
      env: s.env,
      stdout: true,
      stderr: true,
      resourceLimits: { maxOldGenerationSizeMb: s.memoryMiB },
    });
    if (s.logSink) {
      w.stdout.pipe(s.logSink, { end: false });
      w.stderr.pipe(s.logSink, { end: false });
    } else {
      w.stdout.resume();
      w.stderr.resume();
    }
    this.worker = w;
    this.ready = new Promise<void>((resolve, reject) => {
      w.on(
        'message',
        (m: {
          ready?: boolean;
          id?: number;
          ok?: boolean;
          result?: unknown;
          error?: Record<string, string>;
        }) => {
          if (m.ready) return resolve();
          const p = this.pending.get(m.id!);
          if (!p) return;
          this.pending.delete(m.id!);
          if (m.ok) p.resolve(m.result);
          else p.reject(new FunctionError(s.functionName, m.error!.errorType!, m.error!.errorMessage!));
        },
      );
      w.on('error', (e) => {
        reject(e);
        this.failAll(new FunctionError(s.functionName, 'Runtime.Error', e.message));
        this.worker = undefined;
        this.ready = undefined;
      });
      w.on('exit', (code) => {
        this.failAll(
          new FunctionError(s.functionName, 'Runtime.ExitError', `environment exited with code ${code}`),
        );
        if (this.worker === w) {
          this.worker = undefined;
          this.ready = undefined;
        }
      });
    });
    return this.ready;
  }

  private failAll(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  private async invokeNow(event: unknown): Promise<unknown> {
    const s = this.spec;
    await this.start();
    const id = this.nextId++;
    const deadlineMs = Date.now() + s.timeoutSeconds * 1000;
    const context = {
      functionName: s.functionName,
      functionVersion: '$LATEST',
      invokedFunctionArn: `arn:aws:lambda:${s.env.AWS_REGION}:000000000000:function:${s.functionName}`,
      memoryLimitInMB: String(s.memoryMiB),
      awsRequestId: randomUUID(),
      logGroupName: `/aws/lambda/${s.functionName}`,
      logStreamName: 'local',
      deadlineMs,
    };
    const result = new Promise<unknown>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    this.worker!.postMessage({ id, event, context });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.pending.delete(id);
        void this.close();
        reject(
          new FunctionError(s.functionName, 'Sandbox.Timedout', `timed out after ${s.timeoutSeconds} s`),
        );
      }, s.timeoutSeconds * 1000);
    });
    try {
      return await Promise.race([result, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}
