import Koa, { type Middleware } from 'koa';
import { Registry } from 'prom-client';
import { Router } from '@koa/router';
import type { Breaker } from '../lib/breaker.js';
import type { Config } from '../lib/config.js';
import type { Pool } from '../lib/db.js';
import type { Logger } from '../lib/logger.js';
import type { Redis } from '../lib/redis.js';
import { authenticate } from './middleware/auth.js';
import { createKeyResolver, type KeyResolver } from './key-resolver.js';
import { errorHandler } from './middleware/errors.js';
import { keyLimits } from './middleware/key-limits.js';
import { measureRequests } from './middleware/metrics.js';
import { rateLimit } from './middleware/rate-limit.js';
import { createApiMetrics, type ApiMetrics } from './metrics.js';
import { requestId } from './middleware/request-id.js';
import { openApiDocument } from './openapi.js';
import { createQueueWriteBreaker } from './redis-breaker.js';
import { createEnqueuer, type EnqueueDeps } from './enqueue.js';
import { createShardedEnqueuer, withReplicaAcks } from './sharded-enqueue.js';
import { isSharded } from '../lib/shards.js';
import { createPgEnqueuer } from './pg-enqueue.js';
import type { Enqueuer } from '../lib/queue.js';
import type { QuotaGuard } from './limits/quotas.js';
import type { SharedBuckets } from './limits/shared-bucket.js';
import { eventIdsOnly, getEventRoute, listEventsRoute } from './routes/event-reads.js';
import { INGEST_ROUTE, ingestEvents } from './routes/events.js';
import { statsRoute } from './routes/stats.js';
import { resolvePriority } from './priority.js';
import type { Shedder } from './shedding/shedder.js';
import type { AuthenticatedState, IngestState, State } from './state.js';
import { healthz, readyz } from './routes/health.js';
import type { LiveHub } from './live/hub.js';
import { LIVE_PATH } from './live/upgrade.js';
import { liveEvents } from './live/route.js';

export interface AppDeps {
  readonly config: Config;
  readonly pool: Pool;
  /** For the query API (stats, event reads), with its statement timeout; `pool` when omitted. */
  readonly readPool?: Pool;
  /** The Redis the queue lives in; absent with QUEUE=postgres, where the API never connects to Redis. */
  readonly redis?: Redis;
  readonly logger: Logger;
  /** The latest migration version this build ships (readiness requires it applied). */
  readonly latestMigration: number;
  readonly keys?: KeyResolver;
  /** The API's metrics; created in a private registry when omitted. */
  readonly metrics?: ApiMetrics;
  /** Admission control; without one every request is admitted. */
  readonly shedder?: Shedder;
  /** The breaker around the queue write (XADD or insert); one with a private registry when omitted. */
  readonly redisBreaker?: Breaker;
  /** Rate-limit and quota buckets shared by every API process (see `limits/shared-bucket.ts`). */
  readonly buckets: SharedBuckets;
  /** Per-tenant quotas on accepted events. */
  readonly quotas: QuotaGuard;
  /** The live view's connections; without one there is no live route. */
  readonly live?: LiveHub;
}

/** The enqueuer of the configured queue (QUEUE): the Redis stream needs a Redis client, the Postgres table does not. */
function createQueueEnqueuer(deps: Omit<EnqueueDeps, 'redis'> & { redis: Redis | undefined }): Enqueuer {
  const { redis, redisBreaker, ...rest } = deps;
  if (deps.config.queue === 'postgres') return createPgEnqueuer({ ...rest, breaker: redisBreaker });
  if (!redis) throw new Error('QUEUE=redis needs a Redis client');
  // Sharded streams and replica acks only when configured: the default is the one plain enqueuer.
  const streams = isSharded(deps.config)
    ? createShardedEnqueuer({ ...rest, redis, redisBreaker })
    : createEnqueuer({ ...rest, redis, redisBreaker });
  return withReplicaAcks(streams, redis, deps.config);
}

/** Builds the Koa application; it owns no connections (the caller passes and closes them). */
export function createApp(deps: AppDeps): Koa<State> & { metrics: ApiMetrics } {
  const { config, pool, redis, logger } = deps;
  const metrics = deps.metrics ?? createApiMetrics(new Registry());
  const keys = deps.keys ?? createKeyResolver({ pool, config });
  const redisBreaker = deps.redisBreaker ?? createQueueWriteBreaker(config, new Registry(), logger);
  const enqueuer = createQueueEnqueuer({ config, redis, pool, metrics, redisBreaker, logger });
  const app = new Koa<State>();
  app.proxy = false;
  // Errors are rendered by errorHandler; Koa's own printer would log them a second time.
  app.silent = true;

  const openapi = JSON.stringify(openApiDocument(config));
  const router = new Router<State>();
  const admit: Middleware<IngestState> = deps.shedder?.middleware() ?? ((_ctx, next) => next());
  const ingest = ingestEvents({
    config,
    enqueuer,
    pool,
    metrics,
    redisBreaker,
    logger,
    chargeEvents: (tenant, events) => deps.quotas.charge(tenant, events),
  });
  router.post<IngestState>(
    INGEST_ROUTE,
    authenticate(keys, { scope: 'ingest' }),
    keyLimits(config),
    resolvePriority(),
    rateLimit(config, metrics, deps.buckets),
    deps.quotas.precheck(),
    admit,
    ingest,
  );
  if (deps.live) router.get<AuthenticatedState>(LIVE_PATH, authenticate(keys, { scope: 'read' }), liveEvents(deps.live));
  // After the live route, which /v1/events/:id also matches: the first route registered answers.
  const reads = { config, pool: deps.readPool ?? pool };
  router.get<AuthenticatedState>('/v1/stats', authenticate(keys, { scope: 'read' }), statsRoute(reads));
  router.get<AuthenticatedState>('/v1/events', authenticate(keys, { scope: 'read' }), listEventsRoute(reads));
  router.get<AuthenticatedState>('/v1/events/:id', eventIdsOnly(), authenticate(keys, { scope: 'read' }), getEventRoute(reads));
  router.get('/v1/admin/load', authenticate(keys, { scope: 'admin' }), (ctx) => {
    ctx.type = 'application/json';
    ctx.body = JSON.stringify(deps.shedder?.snapshot() ?? { mode: 'off' });
  });
  router.get('/healthz', healthz());
  router.get('/readyz', readyz(pool, redis, deps.latestMigration, logger));
  router.get('/openapi.json', (ctx) => {
    ctx.type = 'application/json';
    ctx.body = openapi;
  });

  app.use(requestId());
  if (config.metricsEnabled) app.use(measureRequests(metrics));
  app.use(errorHandler(logger));
  app.use(router.routes());
  app.use(router.allowedMethods());
  return Object.assign(app, { metrics });
}
