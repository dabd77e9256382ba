import { hostname } from 'node:os';
import type { Config } from '../lib/config.js';
import { createPool } from '../lib/db.js';
import type { Logger } from '../lib/logger.js';
import { createRegistry } from '../lib/metrics.js';
import { startMetricsServer } from '../lib/metrics-server.js';
import { createQueueRedis } from '../lib/redis.js';
import { isSharded, streamShards } from '../lib/shards.js';
import { createLivePublisher, liveDedupWindowMs } from '../lib/live-publisher.js';
import { createFlusher, createPostgresWriteBreaker } from './flusher.js';
import { createShardedFlusher } from './sharded-flusher.js';
import { createMaintenance } from './maintenance.js';
import { createPgFlusher } from './pg-flusher.js';
import { registerPgQueueStats } from './stats/pg-queue-stats.js';
import { registerPgStats } from './stats/pg-stats.js';
import { registerRedisStats } from './stats/redis-stats.js';
import { createWorkerMetrics } from './worker-metrics.js';

/** A running worker process's parts. */
export interface RunningWorker {
  close(): Promise<void>;
}

/**
 * Starts one flush worker with its maintenance loop and metrics endpoint. close(): stop reading, flush and
 * acknowledge what is held, then close the metrics server, Redis and Postgres — each step attempted even if
 * one before it failed.
 */
export async function runWorker(config: Config, logger: Logger): Promise<RunningWorker> {
  const pool = createPool(config.databaseUrl, { max: config.dbPoolSize, applicationName: 'floodgate-worker' });
  // QUEUE=postgres: no Redis connection at all.
  const redis = config.queue === 'redis' ? createQueueRedis(config, { maxRetriesPerRequest: 3 }) : undefined;
  const registry = createRegistry('worker');
  const metrics = createWorkerMetrics(registry);
  // Scrape-time pg_stat queries get their own small pool so a slow scrape never takes the flusher's connections.
  const statsPool = createPool(config.databaseUrl, { max: 3, applicationName: 'floodgate-pg-stats' });
  registerPgStats({ registry, pool: statsPool, logger });
  if (redis) {
    registerRedisStats({
      registry,
      redis,
      streamKey: config.streamKey,
      deadLetterStreamKey: config.deadLetterStreamKey,
      consumerGroup: config.consumerGroup,
      shards: isSharded(config) ? streamShards(config) : undefined,
      logger,
    });
  } else {
    registerPgQueueStats({ registry, pool: statsPool, logger });
  }
  const breaker = createPostgresWriteBreaker(config, registry, logger);
  // The live view publishes through Redis (a single one or a cluster): with QUEUE=postgres it is off, as with
  // LIVE_ENABLED=false (see docs/live.md).
  const live =
    config.liveEnabled && redis
      ? createLivePublisher({
          redis,
          pool,
          streamKey: config.streamKey,
          resumeWindowMs: config.liveResumeWindowMs,
          dedupWindowMs: liveDedupWindowMs(config),
          logger,
          registry,
        })
      : undefined;
  const flusher = redis
    ? (isSharded(config) ? createShardedFlusher : createFlusher)({
        config,
        pool,
        redis,
        logger,
        consumerName: `${hostname()}-${process.pid}`,
        metrics,
        breaker,
        onCommitted: live?.onCommitted,
      })
    : createPgFlusher({ config, pool, logger, metrics, breaker });
  const maintenance = createMaintenance({ config, pool, logger, metrics });
  await maintenance.start();
  await flusher.start();
  const metricsServer =
    config.metricsEnabled && config.workerMetricsPort > 0
      ? await startMetricsServer(config.workerMetricsPort, config, async () => ({
          contentType: registry.contentType,
          body: await registry.metrics(),
        }))
      : undefined;

  let closing: Promise<void> | undefined;
  return {
    close() {
      closing ??= (async () => {
        const steps: [string, () => Promise<unknown>][] = [
          ['flusher', () => flusher.close()],
          // After the final flush: what it committed is published before Redis closes.
          ['live publisher', async () => live?.close()],
          ['breaker', async () => breaker.shutdown()],
          ['maintenance', () => maintenance.close()],
          ['metrics server', async () => metricsServer?.close()],
          ['redis', async () => redis?.quit()],
          ['postgres', () => pool.end()],
          ['postgres (stats)', () => statsPool.end()],
        ];
        for (const [name, step] of steps) {
          await step().catch((err: unknown) => logger.error({ err, step: name }, 'error while closing the worker'));
        }
      })();
      return closing;
    },
  };
}
