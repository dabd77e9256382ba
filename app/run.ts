import { createServer, type Server } from 'node:http';
import { createEarlyShed } from './early-shed.js';
import type { AddressInfo } from 'node:net';
import type { Config } from '../lib/config.js';
import { createPool } from '../lib/db.js';
import type { Logger } from '../lib/logger.js';
import { createRegistry } from '../lib/metrics.js';
import { readMigrations } from '../lib/migrate.js';
import { Registry } from 'prom-client';
import { createRedis } from '../lib/redis.js';
import { createApp } from './server.js';
import { createApiMetrics, createUninstrumentedApiMetrics } from './metrics.js';
import { createRedisWriteBreaker } from './redis-breaker.js';
import { createShedder } from './shedding/shedder.js';

/** A running API server process and how to stop it gracefully. */
export interface RunningApi {
  readonly port: number;
  readonly server: Server;
  /** This process's metrics (the cluster primary aggregates them across processes). */
  readonly registry: Registry;
  close(): Promise<void>;
}

/**
 * Starts one API server on config.host:config.port. close(): stop accepting, let in-flight requests finish
 * (up to shutdownTimeoutMs, then cut), then close Redis and Postgres; idempotent.
 */
export async function runApi(config: Config, logger: Logger): Promise<RunningApi> {
  const pool = createPool(config.databaseUrl, { max: config.dbPoolSize, applicationName: 'floodgate-api' });
  // The query API's own connections: a slow read waits for one of these, never for the ingest path's.
  const readPool = createPool(config.databaseUrl, { max: config.queryPoolSize, applicationName: 'floodgate-api-read', statementTimeoutMs: config.queryTimeoutMs });
  const redis = createRedis(config.redisUrl, { commandTimeout: config.redisWriteTimeoutMs });
  const migrations = await readMigrations();
  const latestMigration = migrations.at(-1)?.version ?? 0;
  // With metrics off the registry stays empty (no default collectors, no GC observer) and instruments do nothing.
  const registry = config.metricsEnabled ? createRegistry('api') : new Registry();
  const metrics = config.metricsEnabled ? createApiMetrics(registry) : createUninstrumentedApiMetrics();
  const redisBreaker = createRedisWriteBreaker(config, registry, logger);
  const shedder = createShedder({ config, latency: metrics.latency, redis, registry, logger, dependencies: [redisBreaker] });
  const app = createApp({ config, pool, readPool, redis, logger, latestMigration, metrics, shedder, redisBreaker });

  const handle = app.callback();
  const shedEarly = createEarlyShed(shedder, metrics);
  const server = createServer((req, res) => {
    if (!shedEarly(req, res)) void handle(req, res);
  });
  // Longer than typical load balancer idle timeouts so the proxy, not us, closes idle keep-alive sockets.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  logger.info({ port, host: config.host }, 'api listening');

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      const errors: unknown[] = [];
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const deadline = setTimeout(() => server.closeAllConnections(), config.shutdownTimeoutMs);
      await closed;
      clearTimeout(deadline);
      await shedder.close();
      redisBreaker.shutdown();
      // quit() waits for a reply that a disconnected client never gets; disconnect() then is immediate.
      if (redis.status === 'ready') await redis.quit().catch((err: unknown) => errors.push(err));
      else redis.disconnect();
      await pool.end().catch((err: unknown) => errors.push(err));
      await readPool.end().catch((err: unknown) => errors.push(err));
      if (errors.length > 0) logger.error({ errors }, 'errors while closing the api');
    })();
    return closing;
  };
  return { port, server, registry, close };
}
