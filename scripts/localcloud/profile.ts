/**
 * Which local cloud the harness talks to.
 *   CDP_CLOUD=moto (default): the embedded moto server (endpoint from `npm run cloud:start`'s state
 *     file, or CDP_CLOUD_ENDPOINT). Functions run in-process under the local event-source-mapping runner.
 *   CDP_CLOUD=localstack: a LocalStack you run yourself (Docker + LOCALSTACK_AUTH_TOKEN), at
 *     LOCALSTACK_ENDPOINT (default http://localhost:4566). Lambda and event source mappings are real there.
 */
import { existsSync, readFileSync } from 'node:fs';
import { serverStateFile } from './paths.ts';

export interface CloudProfile {
  readonly name: 'moto' | 'localstack';
  readonly endpoint: string;
  readonly region: string;
  /** moto runs no Lambda: the harness removes event source mappings and runs handlers in-process. */
  readonly runsLambdaLocally: boolean;
}

export interface ServerState {
  readonly endpoint: string;
  readonly port: number;
  readonly pid: number;
}

export function readServerState(): ServerState | undefined {
  if (!existsSync(serverStateFile)) return undefined;
  return JSON.parse(readFileSync(serverStateFile, 'utf8')) as ServerState;
}

export function profileFromEnv(env: NodeJS.ProcessEnv = process.env): CloudProfile {
  const region = env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1';
  const name = env.CDP_CLOUD ?? 'moto';
  if (name === 'localstack') {
    return {
      name,
      endpoint: env.LOCALSTACK_ENDPOINT ?? 'http://localhost:4566',
      region,
      runsLambdaLocally: false,
    };
  }
  if (name !== 'moto') throw new Error(`CDP_CLOUD must be 'moto' or 'localstack', not '${name}'`);
  const endpoint = env.CDP_CLOUD_ENDPOINT ?? readServerState()?.endpoint;
  if (!endpoint)
    throw new Error("no local cloud running: run 'npm run cloud:start' or set CDP_CLOUD_ENDPOINT");
  return { name, endpoint, region, runsLambdaLocally: true };
}

export function motoProfile(endpoint: string, region = 'us-east-1'): CloudProfile {
  return { name: 'moto', endpoint, region, runsLambdaLocally: true };
}
