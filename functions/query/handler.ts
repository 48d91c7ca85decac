/**
 * Query function: read-only answers from the catalog (core/catalog-api.ts). IAM-authorized:
 * invoked directly (lambda:InvokeFunction) with a request as the payload, or through its function
 * URL (auth type AWS_IAM) as GET paths. Bad requests get a clear error naming what was wrong.
 */
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { APIGatewayProxyResultV2, LambdaFunctionURLEvent } from 'aws-lambda';
import { DynamoDbCatalog } from '#adapters/dynamodb-catalog.ts';
import { parseQueryRequest, requestFromPath } from '#core/catalog-api.ts';
import { CdpError } from '#core/errors.ts';
import { makeDocumentClient } from '../commons/clients.ts';
import { requireEnv } from '../commons/env.ts';
import { logger } from '../commons/powertools.ts';
import { answerQuery } from './catalog-query.ts';

const deps = {
  catalog: new DynamoDbCatalog(makeDocumentClient(), requireEnv('CATALOG_TABLE')),
  defaultRpoSeconds: Number(requireEnv('DEFAULT_RPO_SECONDS')),
  now: () => new Date(),
};

function isUrlEvent(e: unknown): e is LambdaFunctionURLEvent {
  return typeof e === 'object' && e !== null && 'requestContext' in e && 'rawPath' in e;
}

async function viaUrl(e: LambdaFunctionURLEvent): Promise<APIGatewayProxyResultV2> {
  const json = (statusCode: number, body: unknown): APIGatewayProxyResultV2 => ({
    statusCode,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (e.requestContext.http.method !== 'GET') return json(405, { error: 'only GET is supported' });
  try {
    const q = parseQueryRequest(requestFromPath(e.rawPath, e.queryStringParameters ?? {}), e.rawPath);
    return json(200, await answerQuery(deps, q));
  } catch (err) {
    if (err instanceof CdpError) return json(400, { error: err.message, code: err.code });
    throw err;
  }
}

export const handler = middy(async (event: unknown): Promise<unknown> => {
  if (isUrlEvent(event)) return viaUrl(event);
  return answerQuery(deps, parseQueryRequest(event, 'query request'));
}).use(injectLambdaContext(logger));
