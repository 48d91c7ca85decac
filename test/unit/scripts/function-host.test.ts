import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FunctionError, FunctionHost } from '../../../scripts/localcloud/function-host.ts';

const dir = mkdtempSync(join(tmpdir(), 'fn-'));
writeFileSync(
  join(dir, 'index.mjs'),
  `let invocations = 0;
export const handler = async (event, context) => {
  invocations++;
  if (event.fail) throw new TypeError('asked to fail');
  if (event.sleepMs) await new Promise((r) => setTimeout(r, event.sleepMs));
  return { table: process.env.TABLE, invocations, fn: context.functionName, left: context.getRemainingTimeInMillis() };
};`,
);

function host(name: string, table: string, timeoutSeconds = 5): FunctionHost {
  return new FunctionHost({
    functionName: name,
    bundleDir: dir,
    handler: 'index.handler',
    timeoutSeconds,
    memoryMiB: 128,
    env: { TABLE: table, AWS_REGION: 'us-east-1' },
  });
}

const hosts: FunctionHost[] = [];
afterAll(async () => Promise.all(hosts.map((h) => h.close())));

describe('FunctionHost', () => {
  it('runs each function with its own deployed environment, keeping the environment warm', async () => {
    const a = host('fa', 'table-a');
    const b = host('fb', 'table-b');
    hosts.push(a, b);
    expect(await a.invoke({})).toMatchObject({ table: 'table-a', invocations: 1, fn: 'fa' });
    expect(await b.invoke({})).toMatchObject({ table: 'table-b', invocations: 1, fn: 'fb' });
    const again = (await a.invoke({})) as { invocations: number; left: number };
    expect(again.invocations).toBe(2);
    expect(again.left).toBeGreaterThan(3000);
    expect(process.env.TABLE).toBeUndefined();
  });

  it('turns a thrown error into a FunctionError with its type', async () => {
    const h = host('ff', 't');
    hosts.push(h);
    await expect(h.invoke({ fail: true })).rejects.toThrow(FunctionError);
    await expect(h.invoke({ fail: true })).rejects.toThrow(/TypeError: asked to fail/);
  });

  it('times out like Lambda and starts a fresh environment for the next invocation', async () => {
    const h = host('ft', 't', 1);
    hosts.push(h);
    await h.invoke({});
    await expect(h.invoke({ sleepMs: 3000 })).rejects.toThrow(/Sandbox.Timedout/);
    expect(await h.invoke({})).toMatchObject({ invocations: 1 });
  });
});
