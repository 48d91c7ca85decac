import type { Duration } from 'aws-cdk-lib';
import { Alarm, ComparisonOperator, Metric, TreatMissingData } from 'aws-cdk-lib/aws-cloudwatch';
import type { ITable } from 'aws-cdk-lib/aws-dynamodb';
import { Rule, Schedule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import { Construct } from 'constructs';
import { DEFAULTS } from '../defaults.ts';
import { CdpFunction } from './cdp-function.ts';

export interface RpoMonitorProps {
  readonly catalog: ITable;
  /** RPO target of safes that do not set their own. */
  readonly defaultRpo: Duration;
  /**
   * How often lag is measured.
   * @default - DEFAULTS.monitorInterval (1 minute)
   */
  readonly interval?: Duration;
}

/**
 * Replication-lag monitoring: a function on a schedule publishes each safe's lag
 * (ReplicationLagSeconds, dimension Safe) and the count of safes past their RPO target
 * (SafesOverRpo); an alarm fires when that count is above zero, or when the monitor stops
 * reporting (missing data is breaching), so a silent agent and a silent monitor both page.
 */
export class RpoMonitor extends Construct {
  static readonly SERVICE = 'cdp-monitor';
  readonly fn: NodejsFunction;
  readonly alarm: Alarm;

  constructor(scope: Construct, id: string, props: RpoMonitorProps) {
    super(scope, id);
    const interval = props.interval ?? DEFAULTS.monitorInterval;
    this.fn = new CdpFunction(this, 'Function', {
      entry: 'functions/monitor/handler.ts',
      serviceName: RpoMonitor.SERVICE,
      timeout: DEFAULTS.monitorTimeout,
      memoryMiB: DEFAULTS.smallFunctionMemoryMiB,
      environment: {
        CATALOG_TABLE: props.catalog.tableName,
        DEFAULT_RPO_SECONDS: String(props.defaultRpo.toSeconds()),
      },
    }).fn;
    props.catalog.grantReadData(this.fn);
    new Rule(this, 'Schedule', {
      description: 'Measures every safe’s replication lag against its RPO target',
      schedule: Schedule.rate(interval),
      targets: [new LambdaFunction(this.fn, { retryAttempts: 0 })],
    });
    this.alarm = new Alarm(this, 'RpoAlarm', {
      alarmDescription:
        'A safe is past its RPO target (its agent may have gone silent), or the monitor stopped reporting',
      metric: new Metric({
        namespace: DEFAULTS.metricsNamespace,
        metricName: 'SafesOverRpo',
        dimensionsMap: { service: RpoMonitor.SERVICE },
        statistic: 'Maximum',
        period: interval,
      }),
      threshold: 0,
      comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 2,
      treatMissingData: TreatMissingData.BREACHING,
    });
  }
}
