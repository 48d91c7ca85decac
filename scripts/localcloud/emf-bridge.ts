/**
 * What CloudWatch Logs does with a Lambda's Embedded Metric Format lines, done locally: each JSON
 * log line carrying `_aws.CloudWatchMetrics` becomes PutMetricData calls on the emulator, so the
 * metrics the functions publish with Powertools can be read back (GetMetricStatistics) and the
 * stack's alarms see them. https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
 */
import {
  type CloudWatchClient,
  type MetricDatum,
  PutMetricDataCommand,
  type StandardUnit,
} from '@aws-sdk/client-cloudwatch';

interface EmfDirective {
  readonly Namespace: string;
  readonly Dimensions: string[][];
  readonly Metrics: { Name: string; Unit?: string }[];
}

/** The metric data of one EMF log line, grouped by namespace; empty when the line is not EMF. */
export function emfToMetricData(line: string): Map<string, MetricDatum[]> {
  const out = new Map<string, MetricDatum[]>();
  if (!line.includes('"_aws"')) return out;
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return out;
  }
  const aws = doc._aws as { Timestamp?: number; CloudWatchMetrics?: EmfDirective[] } | undefined;
  if (!aws?.CloudWatchMetrics) return out;
  const timestamp = new Date(aws.Timestamp ?? Date.now());
  for (const d of aws.CloudWatchMetrics) {
    const list = out.get(d.Namespace) ?? [];
    for (const dims of d.Dimensions.length > 0 ? d.Dimensions : [[]]) {
      const dimensions = dims.map((name) => ({ Name: name, Value: String(doc[name]) }));
      for (const m of d.Metrics) {
        const raw = doc[m.Name];
        const values = (Array.isArray(raw) ? raw : [raw]).map(Number).filter((v) => Number.isFinite(v));
        if (values.length === 0) continue;
        list.push({
          MetricName: m.Name,
          Dimensions: dimensions,
          Unit: m.Unit as StandardUnit | undefined,
          Timestamp: timestamp,
          Values: values,
        });
      }
    }
    out.set(d.Namespace, list);
  }
  return out;
}

/** Splits a function's output into lines and publishes the EMF ones; other lines pass through. */
export class EmfBridge {
  private buffered = '';
  private pending: Promise<unknown> = Promise.resolve();
  published = 0;
  private readonly cw: CloudWatchClient;

  constructor(cw: CloudWatchClient) {
    this.cw = cw;
  }

  private lastChunkAt = 0;

  push(chunk: string): void {
    this.lastChunkAt = Date.now();
    this.buffered += chunk;
    const lines = this.buffered.split('\n');
    this.buffered = lines.pop() ?? '';
    for (const line of lines) {
      for (const [ns, data] of emfToMetricData(line)) {
        if (data.length === 0) continue;
        this.published += data.length;
        this.pending = this.pending.then(() =>
          this.cw.send(new PutMetricDataCommand({ Namespace: ns, MetricData: data })).catch((e: Error) => {
            console.error(`EMF bridge: PutMetricData failed: ${e.message}`);
          }),
        );
      }
    }
  }

  /** Resolves once every metric seen so far is published. */
  flush(): Promise<unknown> {
    return this.pending;
  }

  /**
   * Waits until the functions' output has been quiet for `quietMs` (a worker's stdout reaches
   * this thread on its own channel, after the invocation's result may have), then flushes.
   */
  async settle(quietMs = 250): Promise<void> {
    while (Date.now() - this.lastChunkAt < quietMs) await new Promise((r) => setTimeout(r, quietMs / 5));
    await this.flush();
  }
}
