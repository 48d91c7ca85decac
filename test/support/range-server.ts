/**
 * A local HTTP server answering ranged GETs of objects (as a presigned S3 URL does), with faults
 * to inject per request: cut the connection after some bytes, answer a status, ignore the range,
 * or send the headers and then nothing.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Fault =
  | { readonly kind: 'cut'; readonly afterBytes: number }
  | { readonly kind: 'status'; readonly status: number }
  | { readonly kind: 'ignore-range' }
  | { readonly kind: 'stall' };

export interface RangeRequest {
  readonly path: string;
  readonly first: number;
  readonly last: number;
}

export interface RangeServer {
  /** The URL of the object at `path`. */
  url(path: string): string;
  /** Every request answered so far, in order. */
  readonly requests: RangeRequest[];
  close(): Promise<void>;
}

/**
 * Serves `objects(path)` (undefined: 404); `fault(request, n)` (n = requests so far for that path,
 * this one included) may pick a fault for the request.
 */
export async function rangeServer(
  objects: (path: string) => Buffer | undefined,
  fault: (r: RangeRequest, n: number) => Fault | undefined = () => undefined,
): Promise<RangeServer> {
  const requests: RangeRequest[] = [];
  const counts = new Map<string, number>();
  const server: Server = createServer((req: IncomingMessage, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const body = objects(path);
    if (!body) {
      res.writeHead(404).end('NoSuchKey');
      return;
    }
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    const first = m ? Number(m[1]) : 0;
    const last = m ? Math.min(Number(m[2]), body.length - 1) : body.length - 1;
    const r = { path, first, last };
    requests.push(r);
    const n = (counts.get(path) ?? 0) + 1;
    counts.set(path, n);
    const f = fault(r, n);
    if (f?.kind === 'status') {
      res.writeHead(f.status).end(`injected ${f.status}`);
      return;
    }
    if (f?.kind === 'ignore-range' || !m) {
      res.writeHead(200, { 'content-length': body.length }).end(body);
      return;
    }
    const bytes = body.subarray(first, last + 1);
    res.writeHead(206, {
      'content-length': bytes.length,
      'content-range': `bytes ${first}-${last}/${body.length}`,
    });
    if (f?.kind === 'stall') {
      res.flushHeaders();
      return; // the test's timeout ends it
    }
    if (f?.kind === 'cut') {
      res.write(bytes.subarray(0, f.afterBytes), () => res.destroy());
      return;
    }
    res.end(bytes);
  });
  server.keepAliveTimeout = 1000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    url: (path) => `http://127.0.0.1:${port}${path.startsWith('/') ? '' : '/'}${path}`,
    requests,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}
