import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from './config.js';

/** What a scrape returns. */
export interface Exposition {
  readonly contentType: string;
  readonly body: string;
}

const digest = (value: string) => createHash('sha256').update(value).digest();

/** Whether the scrape carries `Authorization: Bearer <token>`; compared in constant time. */
function authorized(req: IncomingMessage, expected: Buffer | undefined): boolean {
  if (!expected) return true;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  return match !== null && timingSafeEqual(digest(match[1]!), expected);
}

/**
 * A small HTTP server answering GET /metrics from `render`; separate from the API so scrapes never queue behind
 * ingest traffic. It listens on METRICS_HOST (loopback unless opened up) and, with METRICS_TOKEN set, answers
 * only scrapes that send it. Concurrent scrapes share one rendering: a worker's render runs Postgres queries,
 * and a burst of scrapes must not multiply them.
 */
export async function startMetricsServer(
  port: number,
  access: Pick<Config, 'metricsHost' | 'metricsToken'>,
  render: () => Promise<Exposition>,
): Promise<{ port: number; close(): Promise<void>; server: Server }> {
  const token = access.metricsToken ? digest(access.metricsToken) : undefined;
  let rendering: Promise<Exposition> | undefined;
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/metrics' && !req.url?.startsWith('/metrics?'))) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try GET /metrics\n');
      return;
    }
    if (!authorized(req, token)) {
      res
        .writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer' })
        .end('send Authorization: Bearer <METRICS_TOKEN>\n');
      return;
    }
    rendering ??= render().finally(() => (rendering = undefined));
    rendering.then(
      ({ contentType, body }) => res.writeHead(200, { 'content-type': contentType }).end(body),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics collection failed: ${err.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, access.metricsHost, () => resolve());
  });
  let closing: Promise<void> | undefined;
  return {
    port: (server.address() as AddressInfo).port,
    server,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
