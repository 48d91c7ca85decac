/**
 * RPO monitor: run every minute by an EventBridge schedule. Publishes each safe's replication lag
 * (ReplicationLagSeconds, dimension Safe) and the number of safes past their RPO target
 * (SafesOverRpo), which the stack's alarm watches; the alarm also fires when this function stops
 * reporting (missing data is breaching).
 */
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import { DynamoDbCatalog } from '#adapters/dynamodb-catalog.ts';
import { type LagReport, measureLag } from '#core/rpo.ts';
import { makeDocumentClient } from '../commons/clients.ts';
import { requireEnv } from '../commons/env.ts';
import { logger, metrics } from '../commons/powertools.ts';

const deps = {
  catalog: new DynamoDbCatalog(makeDocumentClient(), requireEnv('CATALOG_TABLE')),
  defaultRpoSeconds: Number(requireEnv('DEFAULT_RPO_SECONDS')),
  now: () => new Date(),
};

export const handler = middy(async (): Promise<LagReport> => {
  const report = await measureLag(deps);
  for (const s of report.safes) {
    const m = metrics.singleMetric();
    m.addDimension('Safe', s.safe);
    m.addMetric('ReplicationLagSeconds', MetricUnit.Seconds, s.lagSeconds);
    if (s.breached) logger.warn('safe is past its RPO target', { ...s });
  }
  metrics.addMetric('SafesOverRpo', MetricUnit.Count, report.breaches);
  logger.info('replication lag', {
    safes: report.safes.length,
    breaches: report.breaches,
    worstRatio: report.worstRatio,
  });
  return report;
})
  .use(injectLambdaContext(logger))
  .use(logMetrics(metrics));
