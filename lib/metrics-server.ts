import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What a scrape returns. */
export interface Exposition {
  readonly contentType: string;
  readonly body: string;
}

/** A small HTTP server answering GET /metrics from `render`; separate from the API so scrapes never queue behind ingest traffic. */
export async function startMetricsServer(
  port: number,
  host: string,
  render: () => Promise<Exposition>,
): Promise<{ port: number; close(): Promise<void>; server: Server }> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/metrics' && !req.url?.startsWith('/metrics?'))) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try GET /metrics\n');
      return;
    }
    render().then(
      ({ contentType, body }) => res.writeHead(200, { 'content-type': contentType }).end(body),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics collection failed: ${err.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
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
