/**
 * The pages of a restore plan: built here from the safe (a directory, or S3 with credentials),
 * or asked of the restore function (lambda:InvokeFunction), whose pages carry presigned URLs.
 */
import { type PlanOptions, planPage, type RestorePlan } from '#core/restore-plan.ts';
import type { SafeReader } from '#core/safe-reader.ts';
import { RemoteFunction } from '../remote-function.ts';

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
  const restore = new RemoteFunction(fn, 'restore', 'RestoreFunctionName');
  try {
    let rp = req.rp;
    for (let from: number | null = 0; from !== null; ) {
      const page: RestorePlan = await restore.call<RestorePlan>({
        action: 'plan',
        ...req,
        rp,
        fromBlock: from,
      });
      for (const [id, s] of Object.entries(page.segments)) if (s.url) urls.set(id, s.url);
      rp = page.rp; // later pages ask for the RP the first one resolved
      yield page;
      from = page.nextBlock;
    }
  } finally {
    await restore.close();
  }
}
