/** Use case: answers one catalog query (core/catalog-api.ts). Read-only. */
import type { QueryRequest } from '#core/catalog-api.ts';
import type { Catalog, RpRecord } from '#core/ports/catalog.ts';
import { measureLag } from '#core/rpo.ts';

export interface QueryDeps {
  readonly catalog: Catalog;
  readonly defaultRpoSeconds: number;
  now(): Date;
}

export async function answerQuery(deps: QueryDeps, q: QueryRequest): Promise<unknown> {
  const { catalog } = deps;
  switch (q.action) {
    case 'safes':
      return { safes: await catalog.listSafes() };
    case 'rps':
      return { safe: q.safe, rps: await catalog.listRps(q.safe, { fromRp: q.fromRp, limit: q.limit }) };
    case 'rp': {
      let rp: RpRecord | undefined;
      if (typeof q.at === 'number') rp = await catalog.getRp(q.safe, q.at);
      else if (q.at === 'latest') {
        const s = await catalog.getSafe(q.safe);
        rp = s?.newestRp ? await catalog.getRp(q.safe, s.newestRp) : undefined;
      } else rp = await catalog.rpAtOrBefore(q.safe, new Date(q.at).toISOString());
      return { safe: q.safe, at: q.at, rp: rp ?? null };
    }
    case 'lag': {
      const report = await measureLag(deps);
      return q.safe === undefined
        ? report
        : { ...report, safes: report.safes.filter((s) => s.safe === q.safe) };
    }
    case 'quarantine':
      return { quarantined: await catalog.listQuarantined(q.safe) };
  }
}
