/** Powertools instances shared by the functions (service name and metrics namespace from the environment). */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';

export const logger = new Logger();
/** Namespace from POWERTOOLS_METRICS_NAMESPACE (set by the stack). */
export const metrics = new Metrics();
