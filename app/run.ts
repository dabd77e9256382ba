import { createServer, type Server } from 'node:http';
import { createEarlyShed } from './early-shed.js';
import type { AddressInfo } from 'node:net';
import type { Config } from '../lib/config.js';
import { createPool } from '../lib/db.js';
import type { Logger } from '../lib/logger.js';
import { createRegistry } from '../lib/metrics.js';
import { readMigrations } from '../lib/migrate.js';
import { Registry } from 'prom-client';
import { keyInvalidationChannel, startKeyInvalidationFeed } from '../lib/key-invalidation.js';
import { createQueueRedis } from '../lib/redis.js';
import { createQuotaGuard } from './limits/quotas.js';
import { createSharedBuckets } from './limits/shared-bucket.js';
import { createTenantPolicies } from './limits/tenant-policies.js';
import { createKeyResolver } from './key-resolver.js';
import { createApp } from './server.js';
import { createApiMetrics, createUninstrumentedApiMetrics } from './metrics.js';
import { createQueueWriteBreaker } from './redis-breaker.js';
import { pgQueueDepth } from '../lib/pg-queue.js';
import { createShedder } from './shedding/shedder.js';
import { createLiveHub } from './live/hub.js';
import { routeUpgrades } from './live/upgrade.js';

/** A running API server process and how to stop it gracefully. */
export interface RunningApi {
  readonly port: number;
  readonly server: Server;
  /** This process's metrics (the cluster primary aggregates them across processes). */
  readonly registry: Registry;
  close(): Promise<void>;
}

/**
 * Starts one API server on config.host:config.port. close(): stop accepting, end live connections (with a close
 * message, at most a couple of seconds), let in-flight requests finish (up to shutdownTimeoutMs, then cut),
 * then close Redis and Postgres; idempotent.
 */
export async function runApi(config: Config, logger: Logger): Promise<RunningApi> {
  const pool = createPool(config.databaseUrl, { max: config.dbPoolSize, applicationName: 'floodgate-api' });
  // The query API's own connections: a slow read waits for one of these, never for the ingest path's.
  const readPool = createPool(config.databaseUrl, {
    max: config.queryPoolSize,
    applicationName: 'floodgate-api-read',
    statementTimeoutMs: config.queryTimeoutMs,
    genericPlans: true,
  });
  // QUEUE=postgres: no Redis connection at all (key revocations then reach this process within a second, by
  // revalidation; see docs/scaling.md).
  const redis = config.queue === 'redis' ? createQueueRedis(config, { commandTimeout: config.redisWriteTimeoutMs }) : undefined;
  const migrations = await readMigrations();
  const latestMigration = migrations.at(-1)?.version ?? 0;
  // With metrics off the registry stays empty (no default collectors, no GC observer) and instruments do nothing.
  const registry = config.metricsEnabled ? createRegistry('api') : new Registry();
  const metrics = config.metricsEnabled ? createApiMetrics(registry) : createUninstrumentedApiMetrics();
  const redisBreaker = createQueueWriteBreaker(config, registry, logger);
  const policies = createTenantPolicies({ pool, refreshMs: config.quotaRefreshMs, logger });
  await policies.start();
  const queueDepth = redis ? undefined : pgQueueDepth(pool);
  const shedder = createShedder({
    config,
    latency: metrics.latency,
    redis,
    queueDepth,
    registry,
    logger,
    dependencies: [redisBreaker],
    weightOf: policies.weightOf,
  });
  // One key cache for authentication and for the early refusal, which needs the tenant to shed fairly.
  const keys = createKeyResolver({ pool, config, registry });
  // Revocations and rotations announced by `floodgate keys` reach this process's key cache within moments.
  // QUEUE=postgres: no feed; cached keys are then revalidated every second (the key resolver's unfed TTL).
  const invalidations =
    redis !== undefined ? startKeyInvalidationFeed({ config, channel: keyInvalidationChannel(config), listener: keys, logger }) : undefined;
  // The live view fans out through Redis (a single one or a cluster): with QUEUE=postgres it is off, as with
  // LIVE_ENABLED=false (see docs/live.md).
  const live = config.liveEnabled && redis ? createLiveHub({ config, redis, logger, registry }) : undefined;
  const buckets = createSharedBuckets({
    redis,
    keyPrefix: `${config.streamKey}:limits`,
    processes: config.apiProcesses,
    registry,
    logger,
    // QUEUE=postgres: no Redis, so each process enforces its share, as with RATE_LIMIT_STORE=local.
    shared: redis !== undefined && config.rateLimitStore === 'redis',
  });
  const quotas = createQuotaGuard(buckets, policies);
  const app = createApp({
    config,
    pool,
    readPool,
    redis,
    logger,
    latestMigration,
    metrics,
    shedder,
    redisBreaker,
    keys,
    buckets,
    quotas,
    live,
  });

  const handle = app.callback();
  const shedEarly = createEarlyShed(shedder, metrics, keys);
  /** An HTTP server answering the whole API, listening on `port`. */
  const listen = async (listenPort: number) => {
    const server = createServer((req, res) => {
      if (!shedEarly(req, res)) void handle(req, res);
    });
    // Longer than typical load balancer idle timeouts so the proxy, not us, closes idle keep-alive sockets.
    server.keepAliveTimeout = 65_000;
    server.headersTimeout = 66_000;
    server.requestTimeout = 30_000;
    if (live) routeUpgrades(server, (req, res) => void handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listenPort, config.host, () => resolve());
    });
    return server;
  };
  const server = await listen(config.port);
  const port = (server.address() as AddressInfo).port;
  // Node takes one waiting connection from a listening socket per turn of its event loop: behind a flood's
  // hundreds of new connections, a critical client's new connection waits its turn on PORT (measured: up to a
  // second). On a port of its own it is taken at the next turn.
  const criticalServer = config.criticalPort > 0 ? await listen(config.criticalPort) : undefined;
  const servers = criticalServer ? [server, criticalServer] : [server];
  logger.info({ port, criticalPort: config.criticalPort || undefined, host: config.host }, 'api listening');

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      const errors: unknown[] = [];
      const closed = Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
      for (const s of servers) s.closeIdleConnections();
      const deadline = setTimeout(() => servers.forEach((s) => s.closeAllConnections()), config.shutdownTimeoutMs);
      // Live connections never finish by themselves: they are told to reconnect elsewhere and ended.
      await live?.close().catch((err: unknown) => errors.push(err));
      for (const s of servers) s.closeIdleConnections();
      await closed;
      clearTimeout(deadline);
      await shedder.close();
      await invalidations?.close();
      await policies.close();
      redisBreaker.shutdown();
      // quit() waits for a reply that a disconnected client never gets; disconnect() then is immediate.
      if (redis?.status === 'ready') await redis.quit().catch((err: unknown) => errors.push(err));
      else redis?.disconnect();
      await pool.end().catch((err: unknown) => errors.push(err));
      await readPool.end().catch((err: unknown) => errors.push(err));
      if (errors.length > 0) logger.error({ errors }, 'errors while closing the api');
    })();
    return closing;
  };
  return { port, server, registry, close };
}
