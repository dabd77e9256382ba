import Koa from 'koa';
import { Registry } from 'prom-client';
import { Router } from '@koa/router';
import type { Breaker } from '../lib/breaker.js';
import type { Config } from '../lib/config.js';
import type { Pool } from '../lib/db.js';
import type { Logger } from '../lib/logger.js';
import type { Redis } from '../lib/redis.js';
import { authenticate, createKeyResolver, type KeyResolver } from './middleware/auth.js';
import { errorHandler } from './middleware/errors.js';
import { measureRequests, outsideLatencyWindow, recordLatency } from './middleware/metrics.js';
import { rateLimit } from './middleware/rate-limit.js';
import { createApiMetrics, type ApiMetrics } from './metrics.js';
import { requestId } from './middleware/request-id.js';
import { openApiDocument } from './openapi.js';
import { createRedisWriteBreaker } from './redis-breaker.js';
import { getEventRoute, listEventsRoute } from './routes/event-reads.js';
import { ingestEvents, resolvePriority } from './routes/events.js';
import { statsRoute } from './routes/stats.js';
import type { Shedder } from './shedding/shedder.js';
import { healthz, readyz } from './routes/health.js';

export interface AppDeps {
  readonly config: Config;
  readonly pool: Pool;
  /** For the query API (stats, event reads), with its statement timeout; `pool` when omitted. */
  readonly readPool?: Pool;
  readonly redis: Redis;
  readonly logger: Logger;
  /** The latest migration version this build ships (readiness requires it applied). */
  readonly latestMigration: number;
  readonly keys?: KeyResolver;
  /** The API's metrics; created in a private registry when omitted. */
  readonly metrics?: ApiMetrics;
  /** Admission control; without one every request is admitted. */
  readonly shedder?: Shedder;
  /** The breaker around the XADD; one with a private registry when omitted. */
  readonly redisBreaker?: Breaker;
}

/** Builds the Koa application; it owns no connections (the caller passes and closes them). */
export function createApp(deps: AppDeps): Koa & { metrics: ApiMetrics } {
  const { config, pool, redis, logger } = deps;
  const metrics = deps.metrics ?? createApiMetrics(new Registry());
  const keys = deps.keys ?? createKeyResolver(pool, config.authCacheTtlMs);
  const redisBreaker = deps.redisBreaker ?? createRedisWriteBreaker(config, new Registry(), logger);
  const app = new Koa();
  app.proxy = false;
  // Errors are rendered by errorHandler; Koa's own printer would log them a second time.
  app.silent = true;

  const openapi = JSON.stringify(openApiDocument(config));
  const router = new Router();
  const admit = deps.shedder?.middleware() ?? ((_ctx, next) => next());
  router.post('/v1/events', authenticate(keys, { scope: 'ingest' }), resolvePriority(), rateLimit(config, metrics), admit, ingestEvents({ config, redis, pool, metrics, redisBreaker, logger }));
  router.get('/v1/admin/load', authenticate(keys, { scope: 'admin' }), (ctx) => {
    ctx.type = 'application/json';
    ctx.body = JSON.stringify(deps.shedder?.snapshot() ?? { mode: 'off' });
  });
  const reads = { config, pool: deps.readPool ?? pool };
  router.get('/v1/stats', authenticate(keys, { scope: 'read' }), outsideLatencyWindow(), statsRoute(reads));
  router.get('/v1/events', authenticate(keys, { scope: 'read' }), outsideLatencyWindow(), listEventsRoute(reads));
  router.get('/v1/events/:id', authenticate(keys, { scope: 'read' }), outsideLatencyWindow(), getEventRoute(reads));
  router.get('/healthz', healthz());
  router.get('/readyz', readyz(pool, redis, deps.latestMigration));
  router.get('/openapi.json', (ctx) => {
    ctx.type = 'application/json';
    ctx.body = openapi;
  });

  app.use(requestId());
  app.use(config.metricsEnabled ? measureRequests(metrics) : recordLatency(metrics.latency));
  app.use(errorHandler(logger));
  app.use(router.routes());
  app.use(router.allowedMethods());
  return Object.assign(app, { metrics });
}
