// Pipeline throughput against queue topology: the Postgres queue, one Redis, and a Redis Cluster with sharded
// streams, each drained by 1 or more flush worker processes. Run by `bench/queue-bench.ts --topology`.
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
import { generateEvent, seededRandom } from '../loadtest/events.js';
import type { BenchEnv } from './bench-env.js';
import { FLOODGATE_BIN, freePort, startNode, waitForOk, type Child } from './processes.js';

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

/** Waits until `n` rows are stored; answers when (performance.now()) the last one was seen. */
async function waitForRows(bench: BenchEnv, n: number): Promise<number> {
  const deadline = Date.now() + 300_000;
  while ((await countRows(bench)) < n) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} durable events`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return performance.now();
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

/** The cumulative buckets of a histogram in Prometheus text, summed over several expositions, by `le`. */
function summedBuckets(texts: readonly string[], name: string): Map<string, number> {
  const sums = new Map<string, number>();
  for (const text of texts) {
    for (const m of text.matchAll(new RegExp(`^${name}_bucket\\{(?:[^}]*,)?le="([^"]+)"[^}]*\\} (\\S+)$`, 'gm'))) {
      sums.set(m[1]!, (sums.get(m[1]!) ?? 0) + Number(m[2]));
    }
  }
  return sums;
}

/** Quantile from cumulative buckets: the upper bound of the bucket holding it. */
function bucketQuantile(buckets: Map<string, number>, q: number): number {
  const total = buckets.get('+Inf') ?? 0;
  const ordered = [...buckets].filter(([le]) => le !== '+Inf').sort((a, b) => Number(a[0]) - Number(b[0]));
  return Number(ordered.find(([, count]) => count >= q * total)?.[0] ?? NaN);
}

/** Polls `url` every 5 ms until it answers 200; answers when (performance.now()). */
async function answeredAt(url: string, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if ((await fetch(url).catch(() => undefined))?.ok) return performance.now();
    if (Date.now() > deadline) return waitForOk(url, 0).then(() => performance.now());
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * `workers` separate `floodgate worker` processes over the topology (each its own process, connections and
 * consumer name, as deployed), started and ready. A worker serves its metrics right after its flusher started
 * reading, so `firstReadyAt` (performance.now()) is when the first of them began draining. `scrape` reads their
 * metrics.
 */
async function startWorkers(env: Record<string, string>, workers: number) {
  const ports = await Promise.all(Array.from({ length: workers }, () => freePort()));
  const children: Child[] = ports.map((port) =>
    startNode([FLOODGATE_BIN, 'worker'], { ...env, HOST: '127.0.0.1', WORKER_METRICS_PORT: String(port) }),
  );
  const close = async () => {
    await Promise.all(children.map((c) => c.stop()));
  };
  let firstReadyAt: number;
  try {
    firstReadyAt = Math.min(...(await Promise.all(ports.map((port) => answeredAt(`http://127.0.0.1:${port}/metrics`, 60_000)))));
  } catch (err) {
    await close();
    throw err;
  }
  return {
    firstReadyAt,
    scrape: () => Promise.all(ports.map(async (port) => (await fetch(`http://127.0.0.1:${port}/metrics`)).text())),
    close,
  };
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
 * One run: a preloaded backlog drained by `workers` worker processes (events/s durable, from the first worker
 * reading to the last row stored), then a steady open-loop load with fresh workers (time-to-durable p50/p99 from the
 * workers' histograms, scraped and added up). Deletes the keys it wrote.
 */
export async function runTopology(bench: BenchEnv, topology: Topology, workers: number, load: TopologyLoad): Promise<TopologyFigures> {
  const env = {
    ...bench.env,
    QUEUE: topology.queue,
    STREAM_SHARDS: String(topology.shards),
    ...(topology.clusterSeeds ? { REDIS_CLUSTER_NODES: topology.clusterSeeds } : {}),
  };
  const config = loadConfig(env);
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

    const draining = startWorkers(env, workers);
    const drainedAt = await waitForRows(bench, total);
    const drainers = await draining;
    // From the first worker reading (its start-up left out) to the last row stored.
    const drainEventsPerSec = drainedAt > drainers.firstReadyAt ? total / ((drainedAt - drainers.firstReadyAt) / 1000) : NaN;
    await drainers.close();

    const steadyWorkers = await startWorkers(env, workers);
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
    const durable = summedBuckets(await steadyWorkers.scrape(), 'floodgate_time_to_durable_seconds');
    await steadyWorkers.close();
    return {
      drainEventsPerSec,
      durableP50: bucketQuantile(durable, 0.5),
      durableP99: bucketQuantile(durable, 0.99),
    };
  } finally {
    if (redis) {
      for (const key of keys) await redis.del(key).catch(() => {});
      redis.disconnect();
    }
    await bench.pool.query('TRUNCATE event_queue').catch(() => {});
  }
}
