/**
 * Calls one of the stack's functions directly (lambda:InvokeFunction, IAM-authorized): the query
 * function for `list --remote`, the restore function for `restore --remote`. The Lambda client is
 * loaded only when a remote command runs. Failures are E_REMOTE errors naming the function.
 */
import type { InvokeCommandOutput, LambdaClient } from '@aws-sdk/client-lambda';
import { CdpError } from '#core/errors.ts';

export class RemoteFunctionError extends CdpError {
  constructor(role: string, fn: string, output: string, reason: string) {
    super(
      'E_REMOTE',
      `${role} function ${fn}: ${reason}`,
      {},
      `check --remote (the stack output ${output}), credentials and region`,
    );
  }
}

export class RemoteFunction {
  private client: Promise<{
    client: LambdaClient;
    Invoke: typeof import('@aws-sdk/client-lambda').InvokeCommand;
  }>;
  private readonly fn: string;
  private readonly role: string;
  private readonly output: string;

  /** `role` and `output` name the function in errors: ('query', 'QueryFunctionName'). */
  constructor(fn: string, role: string, output: string) {
    this.fn = fn;
    this.role = role;
    this.output = output;
    this.client = import('@aws-sdk/client-lambda').then((m) => ({
      client: new m.LambdaClient({ maxAttempts: 4 }),
      Invoke: m.InvokeCommand,
    }));
  }

  async call<T>(payload: unknown): Promise<T> {
    const { client, Invoke } = await this.client;
    let r: InvokeCommandOutput;
    try {
      r = await client.send(
        new Invoke({ FunctionName: this.fn, Payload: Buffer.from(JSON.stringify(payload)) }),
      );
    } catch (e) {
      throw new RemoteFunctionError(this.role, this.fn, this.output, (e as Error).message);
    }
    const text = Buffer.from(r.Payload ?? []).toString('utf8');
    if (r.FunctionError) {
      let detail = text;
      try {
        detail = (JSON.parse(text) as { errorMessage?: string }).errorMessage ?? text;
      } catch {}
      throw new RemoteFunctionError(this.role, this.fn, this.output, `failed: ${detail}`);
    }
    return JSON.parse(text) as T;
  }

  async close(): Promise<void> {
    (await this.client).client.destroy();
  }
}
