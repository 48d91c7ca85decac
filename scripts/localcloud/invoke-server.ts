/**
 * The Lambda Invoke API (RequestResponse) for the stack's functions, served locally: moto stores
 * functions but cannot run them without Docker, so callers that invoke a function directly (the
 * agent's `list --remote`, `aws lambda invoke`) point AWS_ENDPOINT_URL_LAMBDA here and the call
 * runs the deployed bundle in its FunctionHost. Same wire format as AWS:
 *   POST /2015-03-31/functions/<name | arn>/invocations   body = payload
 *   200 + result, or 200 + X-Amz-Function-Error: Unhandled + {errorType, errorMessage},
 *   404 ResourceNotFoundException for a function that is not in the stack.
 * https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { FunctionError, type FunctionHost } from './function-host.ts';

export interface InvokeServer {
  readonly endpoint: string;
  close(): Promise<void>;
}

const ROUTE = /^\/2015-03-31\/functions\/([^/]+)\/invocations$/;

export async function startInvokeServer(hosts: Iterable<FunctionHost>): Promise<InvokeServer> {
  const byName = new Map<string, FunctionHost>();
  for (const h of hosts) byName.set(h.spec.functionName, h);
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const send = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(body));
      };
      const m = ROUTE.exec((req.url ?? '').split('?')[0]!);
      if (req.method !== 'POST' || !m) {
        send(
          404,
          { message: `no route ${req.method} ${req.url}` },
          { 'x-amzn-errortype': 'ResourceNotFoundException' },
        );
        return;
      }
      const ref = decodeURIComponent(m[1]!);
      const name = ref.startsWith('arn:') ? ref.split(':')[6]! : ref;
      const host = byName.get(name);
      if (!host) {
        send(
          404,
          { Type: 'User', message: `Function not found: ${ref}` },
          { 'x-amzn-errortype': 'ResourceNotFoundException' },
        );
        return;
      }
      const raw = Buffer.concat(chunks).toString('utf8');
      let payload: unknown;
      try {
        payload = raw.length > 0 ? JSON.parse(raw) : {};
      } catch {
        send(
          400,
          { Type: 'User', message: 'Could not parse request body into json' },
          { 'x-amzn-errortype': 'InvalidRequestContentException' },
        );
        return;
      }
      host.invoke(payload).then(
        (result) => send(200, result ?? null, { 'x-amz-executed-version': '$LATEST' }),
        (e: Error) =>
          send(
            200,
            e instanceof FunctionError
              ? { errorType: e.errorType, errorMessage: e.errorMessage }
              : { errorType: 'Error', errorMessage: e.message },
            { 'x-amz-function-error': 'Unhandled', 'x-amz-executed-version': '$LATEST' },
          ),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
