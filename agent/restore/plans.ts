/**
 * The pages of a restore plan: built here from the safe (a directory, or S3 with credentials),
 * or asked of the restore function (lambda:InvokeFunction), whose pages carry presigned URLs.
 */
import type { InvokeCommandOutput } from '@aws-sdk/client-lambda';
import { CdpError } from '#core/errors.ts';
import { type PlanOptions, planPage, type RestorePlan } from '#core/restore-plan.ts';
import type { SafeReader } from '#core/safe-reader.ts';

export async function* localPages(
  reader: SafeReader,
  rp: number,
  device: string,
  opts: PlanOptions = {},
): AsyncGenerator<RestorePlan> {
  const cfg = await reader.config();
  const resolved = await reader.resolve(rp, device);
  const encryption = cfg?.encryption
    ? { salt: cfg.encryption.salt, keyCheck: cfg.encryption.keyCheck }
    : null;
  for (let from: number | null = 0; from !== null; ) {
    const page: RestorePlan = await planPage(reader, resolved, encryption, { ...opts, fromBlock: from });
    yield page;
    from = page.nextBlock;
  }
}

export class RestoreFunctionError extends CdpError {
  constructor(fn: string, reason: string) {
    super(
      'E_REMOTE',
      `restore function ${fn}: ${reason}`,
      {},
      'check --remote (stack output RestoreFunctionName), credentials and region',
    );
  }
}

export interface RemoteRequest {
  readonly safe: string;
  readonly device: string;
  readonly rp: number | 'latest' | string;
}

/** Plan pages from the restore function; `urls` collects each segment's presigned URL. */
export async function* remotePages(
  fn: string,
  req: RemoteRequest,
  urls: Map<string, string>,
): AsyncGenerator<RestorePlan> {
  const { InvokeCommand, LambdaClient } = await import('@aws-sdk/client-lambda');
  const client = new LambdaClient({ maxAttempts: 4 });
  try {
    let rp = req.rp;
    for (let from: number | null = 0; from !== null; ) {
      let r: InvokeCommandOutput;
      try {
        r = await client.send(
          new InvokeCommand({
            FunctionName: fn,
            Payload: Buffer.from(JSON.stringify({ action: 'plan', ...req, rp, fromBlock: from })),
          }),
        );
      } catch (e) {
        throw new RestoreFunctionError(fn, (e as Error).message);
      }
      const text = Buffer.from(r.Payload ?? []).toString('utf8');
      if (r.FunctionError) {
        let detail = text;
        try {
          detail = (JSON.parse(text) as { errorMessage?: string }).errorMessage ?? text;
        } catch {}
        throw new RestoreFunctionError(fn, detail);
      }
      const page = JSON.parse(text) as RestorePlan;
      for (const [id, s] of Object.entries(page.segments)) if (s.url) urls.set(id, s.url);
      rp = page.rp; // later pages ask for the RP the first one resolved
      yield page;
      from = page.nextBlock;
    }
  } finally {
    client.destroy();
  }
}
