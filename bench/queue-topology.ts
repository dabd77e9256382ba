// Pipeline throughput against queue topology: the Postgres queue, one Redis, and a Redis Cluster with sharded
// streams, each drained by 1 or more flush workers. Run by `bench/queue-bench.ts --topology`.
import { Registry } from 'prom-client';
import { createEnqueuer, dedupMarkerKey } from '../app/enqueue.js';
import { createUninstrumentedApiMetrics } from '../app/metrics.js';
import { createPgEnqueuer } from '../app/pg-enqueue.js';
import { createQueueWriteBreaker } from '../app/redis-breaker.js';
import { createShardedEnqueuer } from '../app/sharded-enqueue.js';
import { loadConfig, type Config } from '../lib/config.js';
import { checkEvent, type ValidEvent } from '../lib/event-schema.js';
import { createLogger } from '../lib/logger.js';
import type { Enqueuer } from '../lib/queue.js';
import { createQueueRedis, type Redis } from '../lib/redis.js';
import { isSharded, streamShards } from '../lib/shards.js';
import { createPgFlusher } from '../workers/pg-flusher.js';
import { createShardedFlusher } from '../workers/sharded-flusher.js';
import { createWorkerMetrics, type WorkerMetrics } from '../workers/worker-metrics.js';
import { generateEvent, seededRandom } from '../loadtest/events.js';
import type { BenchEnv } from './bench-env.js';

/** One queue layout under test. */
export interface Topology {
  readonly name: string;
  readonly queue: 'redis' | 'postgres';
  readonly shards: number;
  /** `host:port,…` of a Redis Cluster, or undefined for the single Redis of the bench environment. */
  readonly clusterSeeds?: string;
}

/** How much load one topology run gets. */
export interface TopologyLoad {
  readonly requests: number;
  readonly perRequest: number;
  readonly steadyRate: number;
  readonly steadySeconds: number;
}

/** What one run measured. */
export interface TopologyFigures {
  readonly drainEventsPerSec: number;
  readonly durableP50: number;
  readonly durableP99: number;
}

const CONCURRENCY = 16;
// Enough tenants that routing by tenant spreads the load over six shards (FNV-1a of these names covers all six).
const TENANTS = Array.from({ length: 24 }, (_, i) => `tenant-${i}`);
const logger = createLogger('silent', 'queue-topology');
const random = seededRandom(17);

function events(n: number): ValidEvent[] {
  const now = Date.now();
  return Array.from({ length: n }, (_, i) => {
    const check = checkEvent(generateEvent(random, i), now, { retentionDays: 30, maxEventDataBytes: 32 * 1024 });
    if (!check.ok) throw new Error('invalid generated event');
    return check.event;
  });
}

async function countRows(bench: BenchEnv): Promise<number> {
  const { rows } = await bench.pool.query<{ n: string }>('SELECT count(*) AS n FROM events');
  return Number(rows[0]!.n);
}

async function waitForRows(bench: BenchEnv, n: number): Promise<void> {
  const deadline = Date.now() + 300_000;
  while ((await countRows(bench)) < n) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} durable events`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Quantile from a prom-client histogram's cumulative buckets: the upper bound of the bucket holding it. */
export async function histogramQuantile(registry: Registry, name: string, q: number): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name) as {
    values: { metricName?: string; labels: { le?: number | string }; value: number }[];
  };
  const buckets = metric.values.filter((v) => v.metricName === `${name}_bucket`);
  const total = buckets.find((b) => b.labels.le === '+Inf')?.value ?? 0;
  const hit = buckets.find((b) => b.value >= q * total);
  return Number(hit?.labels.le ?? NaN);
}

function enqueuerFor(config: Config, bench: BenchEnv, redis: Redis | undefined): Enqueuer {
  const breaker = createQueueWriteBreaker(config, new Registry(), logger);
  const deps = { config, pool: bench.pool, metrics: createUninstrumentedApiMetrics(), logger };
  if (!redis) return createPgEnqueuer({ ...deps, breaker });
  // The same choice the API makes: tagged keys when sharded or on a cluster, the plain enqueuer otherwise.
  return isSharded(config)
    ? createShardedEnqueuer({ ...deps, redis, redisBreaker: breaker })
    : createEnqueuer({ ...deps, redis, redisBreaker: breaker });
}

/** `workers` flushers in this process (each with its own consumer name, as separate processes would have). */
async function startWorkers(config: Config, bench: BenchEnv, redis: Redis | undefined, workers: number, metrics: WorkerMetrics) {
  const started = Array.from({ length: workers }, (_, i) =>
    redis
      ? createShardedFlusher({ config, pool: bench.pool, redis, logger, consumerName: `bench-${i}`, metrics })
      : createPgFlusher({ config, pool: bench.pool, logger, metrics }),
  );
  await Promise.all(started.map((w) => w.start()));
  return { close: () => Promise.all(started.map((w) => w.close())) };
}

async function sendAll(enqueuer: Enqueuer, batches: ValidEvent[][]): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < batches.length) {
        const i = next++;
        await enqueuer.enqueue(TENANTS[i % TENANTS.length]!, 'normal', Date.now(), batches[i]!);
      }
    }),
  );
}

/**
 * One run: a preloaded backlog drained by `workers` flushers (events/s durable), then a steady open-loop load
 * with fresh workers (time-to-durable p50/p99 from the workers' histogram). Deletes the keys it wrote.
 */
export async function runTopology(bench: BenchEnv, topology: Topology, workers: number, load: TopologyLoad): Promise<TopologyFigures> {
  const config = loadConfig({
    ...bench.env,
    QUEUE: topology.queue,
    STREAM_SHARDS: String(topology.shards),
    ...(topology.clusterSeeds ? { REDIS_CLUSTER_NODES: topology.clusterSeeds } : {}),
  });
  await bench.pool.query('TRUNCATE events, idempotency_keys, event_queue');
  const redis = topology.queue === 'redis' ? createQueueRedis(config) : undefined;
  const shards = streamShards(config);
  const keys = shards.flatMap((s) => [s.streamKey, s.deadLetterStreamKey, dedupMarkerKey(s.streamKey)]);
  try {
    // One DEL per key: on a cluster the shards' keys sit in different slots.
    if (redis) for (const key of keys) await redis.del(key);
    const enqueuer = enqueuerFor(config, bench, redis);
    const total = load.requests * load.perRequest;
    await sendAll(
      enqueuer,
      Array.from({ length: load.requests }, () => events(load.perRequest)),
    );

    const drainStart = performance.now();
    const draining = await startWorkers(config, bench, redis, workers, createWorkerMetrics(new Registry()));
    await waitForRows(bench, total);
    const drainSeconds = (performance.now() - drainStart) / 1000;
    await draining.close();

    const registry = new Registry();
    const steadyWorkers = await startWorkers(config, bench, redis, workers, createWorkerMetrics(registry));
    const steady = Array.from({ length: load.steadyRate * load.steadySeconds }, () => events(load.perRequest));
    const t0 = performance.now();
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < steady.length; i++) {
      const wait = t0 + (i * 1000) / load.steadyRate - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      sends.push(enqueuer.enqueue(TENANTS[i % TENANTS.length]!, 'normal', Date.now(), steady[i]!));
    }
    await Promise.all(sends);
    await waitForRows(bench, total + steady.length * load.perRequest);
    await steadyWorkers.close();
    return {
      drainEventsPerSec: total / drainSeconds,
      durableP50: await histogramQuantile(registry, 'floodgate_time_to_durable_seconds', 0.5),
      durableP99: await histogramQuantile(registry, 'floodgate_time_to_durable_seconds', 0.99),
    };
  } finally {
    if (redis) {
      for (const key of keys) await redis.del(key).catch(() => {});
      redis.disconnect();
    }
    await bench.pool.query('TRUNCATE event_queue').catch(() => {});
  }
}
