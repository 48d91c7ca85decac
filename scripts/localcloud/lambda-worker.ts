/**
 * Worker-thread body that hosts one Lambda function: it loads the deployed bundle, then serves
 * invocations one at a time, like one Lambda execution environment. process.env is the function's
 * deployed environment (set by the host when it creates the worker).
 */

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parentPort, workerData } from 'node:worker_threads';

interface HostData {
  readonly bundleDir: string;
  readonly handler: string;
}

interface InvokeRequest {
  readonly id: number;
  readonly event: unknown;
  readonly context: Record<string, unknown> & { deadlineMs: number };
}

type Handler = (event: unknown, context: unknown) => Promise<unknown>;

const { bundleDir, handler } = workerData as HostData;
const dot = handler.lastIndexOf('.');
const base = handler.slice(0, dot);
const exportName = handler.slice(dot + 1);
const file = ['.mjs', '.js', '.cjs'].map((ext) => join(bundleDir, base + ext)).find((f) => existsSync(f));
if (!file) throw new Error(`handler file ${base}.{mjs,js,cjs} not found in ${bundleDir}`);
const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
const fn = mod[exportName] as Handler | undefined;
if (typeof fn !== 'function') throw new Error(`${file} does not export a function '${exportName}'`);

parentPort!.on('message', async (req: InvokeRequest) => {
  const context = {
    ...req.context,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, req.context.deadlineMs - Date.now()),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
  try {
    const result = await fn(req.event, context);
    parentPort!.postMessage({ id: req.id, ok: true, result: result === undefined ? null : result });
  } catch (e) {
    const err = e as Error;
    parentPort!.postMessage({
      id: req.id,
      ok: false,
      error: { errorType: err?.name ?? 'Error', errorMessage: err?.message ?? String(e) },
    });
  }
});
parentPort!.postMessage({ ready: true });
