// Pipeline cost and throughput against queue topology: the Postgres queue, one Redis, and a Redis Cluster with
// sharded streams, each drained by 1 or more flush worker processes. One cell = one topology with one worker
// count, measured once; bench/queue-topology-run.ts alternates the cells in rounds. Run by
// `bench/queue-bench.ts --topology`.
import type pg from 'pg';
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
import { apiCpuMicros, cpuBetween, snapshotCpu, type PipelineCpu } from './pipeline-cpu.js';
import { FLOODGATE_BIN, freePort, startNode, waitForOk, type Child } from './processes.js';
import type { CommandStats, NodeStats } from './redis-commandstats.js';

/** One queue layout under test. */
export interface Topology {
  /** Short name for --only. */
  readonly key: string;
  readonly name: string;
  readonly queue: 'redis' | 'postgres';
  readonly shards: number;
  readonly cluster: boolean;
  /** Another build's `bin/floodgate.js` for the workers (a before/after comparison); this checkout's when omitted. */
  readonly workerBin?: string;
}

/** How much load one cell gets. */
export interface TopologyLoad {
  readonly requests: number;
  readonly perRequest: number;
  readonly steadyRate: number;
  readonly steadySeconds: number;
}

/** What one cell measured. */
export interface CellFigures {
  /** Events durable per second, from the first enqueue to the last row stored (enqueue and drain overlap). */
  readonly eventsPerSec: number;
  /** Events enqueued per second (while the workers drain). */
  readonly enqueueEventsPerSec: number;
  readonly events: number;
  /** Stream entries (requests). */
  readonly entries: number;
  /** CPU of each role over the same window, µs. */
  readonly cpu: PipelineCpu;
  /** Batches the workers wrote in the window. */
  readonly batches: number;
  /** Each redis-server's own accounting over the window, masters and replicas apart (empty for Postgres). */
  readonly masterCommands: CommandStats;
  readonly replicaCommands: CommandStats;
  /** Time-to-durable at a steady load below capacity, bucket bounds. */
  readonly durableP50: number;
  readonly durableP99: number;
}

/** A topology's standing parts, kept across the rounds of a run. */
export interface TopologySetup {
  readonly topology: Topology;
  /** QUEUE, STREAM_SHARDS and REDIS_URL or REDIS_CLUSTER_NODES for the worker processes. */
  readonly env: Readonly<Record<string, string>>;
  readonly config: Config;
  readonly redis: Redis | undefined;
  readonly enqueuer: Enqueuer;
  readonly redisMasters: readonly number[];
  readonly redisReplicas: readonly number[];
  readonly masterStats?: NodeStats;
  readonly replicaStats?: NodeStats;
}

const CONCURRENCY = 16;
// Enough tenants that routing by tenant spreads the load over six shards (FNV-1a of these names covers all six).
const TENANTS = Array.from({ length: 24 }, (_, i) => `tenant-${i}`);
const DURABLE = 'floodgate_time_to_durable_seconds';
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

/** The cumulative buckets of a histogram in Prometheus text, summed over several expositions, by `le`. */
export function summedBuckets(texts: readonly string[], name: string): Map<string, number> {
  const sums = new Map<string, number>();
  for (const text of texts) {
    for (const m of text.matchAll(new RegExp(`^${name}_bucket\\{(?:[^}]*,)?le="([^"]+)"[^}]*\\} (\\S+)$`, 'gm'))) {
      sums.set(m[1]!, (sums.get(m[1]!) ?? 0) + Number(m[2]));
    }
  }
  return sums;
}

/** A sample (`_count`, `_sum`) of a metric summed over several expositions. */
function summedSample(texts: readonly string[], sample: string): number {
  let sum = 0;
  for (const text of texts) for (const m of text.matchAll(new RegExp(`^${sample}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) sum += Number(m[1]);
  return sum;
}

/** Quantile from cumulative buckets: the upper bound of the bucket holding it. */
export function bucketQuantile(buckets: Map<string, number>, q: number): number {
  const total = buckets.get('+Inf') ?? 0;
  const ordered = [...buckets].filter(([le]) => le !== '+Inf').sort((a, b) => Number(a[0]) - Number(b[0]));
  return Number(ordered.find(([, count]) => count >= q * total)?.[0] ?? NaN);
}

/** `after − before`, bucket by bucket. */
function bucketDelta(after: Map<string, number>, before: Map<string, number>): Map<string, number> {
  return new Map([...after].map(([le, n]) => [le, n - (before.get(le) ?? 0)]));
}

/** The enqueuer and queue client of a topology: the same choice the API makes. */
export function topologySetup(
  bench: BenchEnv,
  topology: Topology,
  redis: { env: Record<string, string>; masters: number[]; replicas: number[]; masterStats?: NodeStats; replicaStats?: NodeStats },
): TopologySetup {
  const env = { ...bench.env, ...redis.env, QUEUE: topology.queue, STREAM_SHARDS: String(topology.shards) };
  const config = loadConfig(env);
  const queueRedis = topology.queue === 'redis' ? createQueueRedis(config) : undefined;
  const breaker = createQueueWriteBreaker(config, new Registry(), logger);
  const deps = { config, pool: bench.pool, metrics: createUninstrumentedApiMetrics(), logger };
  const enqueuer = !queueRedis
    ? createPgEnqueuer({ ...deps, breaker })
    : isSharded(config)
      ? createShardedEnqueuer({ ...deps, redis: queueRedis, redisBreaker: breaker })
      : createEnqueuer({ ...deps, redis: queueRedis, redisBreaker: breaker });
  return {
    topology,
    env,
    config,
    redis: queueRedis,
    enqueuer,
    redisMasters: topology.queue === 'redis' ? redis.masters : [],
    redisReplicas: topology.queue === 'redis' ? redis.replicas : [],
    masterStats: topology.queue === 'redis' ? redis.masterStats : undefined,
    replicaStats: topology.queue === 'redis' ? redis.replicaStats : undefined,
  };
}

/** The keys a topology's cells write: every shard's stream, dead-letter stream and dedup marker. */
export function topologyKeys(setup: TopologySetup): string[] {
  return streamShards(setup.config).flatMap((s) => [s.streamKey, s.deadLetterStreamKey, dedupMarkerKey(s.streamKey)]);
}

async function countRows(probe: pg.Client): Promise<number> {
  const { rows } = await probe.query<{ n: string }>('SELECT count(*) AS n FROM events');
  return Number(rows[0]!.n);
}

/** Waits until `n` rows are stored (polling every 20 ms); answers when (performance.now()) the last one was seen. */
async function waitForRows(probe: pg.Client, n: number): Promise<number> {
  const deadline = Date.now() + 120_000;
  while ((await countRows(probe)) < n) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} durable events`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return performance.now();
}

/** `workers` separate `floodgate worker` processes over the topology (as deployed), started and serving metrics. */
async function startWorkers(env: Record<string, string>, workers: number, bin = FLOODGATE_BIN) {
  const ports = await Promise.all(Array.from({ length: workers }, () => freePort()));
  const children: Child[] = ports.map((port) =>
    startNode([bin, 'worker'], { ...env, HOST: '127.0.0.1', WORKER_METRICS_PORT: String(port) }),
  );
  const close = async () => {
    await Promise.all(children.map((c) => c.stop()));
  };
  try {
    await Promise.all(ports.map((port) => waitForOk(`http://127.0.0.1:${port}/metrics`, 60_000)));
  } catch (err) {
    await close();
    throw err;
  }
  return {
    pids: children.map((c) => c.process.pid!),
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

/** What a cell needs beyond its topology: the bench env, a probe connection (left out of the CPU) and its backend. */
export interface CellContext {
  readonly bench: BenchEnv;
  readonly database: string;
  readonly probe: pg.Client;
  readonly probePid: number;
}

/**
 * One cell. The workers are started first and left idle until their start-up is over; then, in one window,
 * the benchmark enqueues `requests` requests (16 in flight) while the workers drain them, up to the last row
 * stored: events/s durable, and the CPU every process of the pipeline spent in that window. Then a steady
 * open-loop load with the same workers gives time-to-durable (from their histograms, the window's share
 * subtracted). Leaves empty streams and tables behind.
 */
export async function measureCell(ctx: CellContext, setup: TopologySetup, workers: number, load: TopologyLoad): Promise<CellFigures> {
  const { bench, probe } = ctx;
  await bench.pool.query('TRUNCATE events, idempotency_keys, event_queue');
  // One DEL per key: on a cluster the shards' keys sit in different slots.
  for (const key of topologyKeys(setup)) await setup.redis?.del(key);
  const total = load.requests * load.perRequest;
  const backlog = Array.from({ length: load.requests }, () => events(load.perRequest));
  const steady = Array.from({ length: load.steadyRate * load.steadySeconds }, () => events(load.perRequest));

  const running = await startWorkers(setup.env, workers, setup.topology.workerBin);
  try {
    // Let the processes finish starting (module loading, first reads, GC) before the window opens.
    await new Promise((r) => setTimeout(r, 300));
    const processes = {
      workers: running.pids,
      redisMasters: setup.redisMasters,
      redisReplicas: setup.redisReplicas,
      database: ctx.database,
      excludeBackends: new Set([ctx.probePid]),
    };
    await Promise.all([setup.masterStats?.reset(), setup.replicaStats?.reset()]);
    const before = snapshotCpu(processes);
    const apiBefore = apiCpuMicros();
    const t0 = performance.now();
    await sendAll(setup.enqueuer, backlog);
    const enqueuedAt = performance.now();
    const apiMicros = apiCpuMicros() - apiBefore;
    const durableAt = await waitForRows(probe, total);
    const after = snapshotCpu(processes);
    const [masterCommands, replicaCommands] = await Promise.all([
      setup.masterStats?.read() ?? new Map(),
      setup.replicaStats?.read() ?? new Map(),
    ]);
    const windowTexts = await running.scrape();

    const s0 = performance.now();
    const sends: Promise<unknown>[] = [];
    for (let i = 0; i < steady.length; i++) {
      const wait = s0 + (i * 1000) / load.steadyRate - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      sends.push(setup.enqueuer.enqueue(TENANTS[i % TENANTS.length]!, 'normal', Date.now(), steady[i]!));
    }
    await Promise.all(sends);
    await waitForRows(probe, total + steady.length * load.perRequest);
    const durable = bucketDelta(summedBuckets(await running.scrape(), DURABLE), summedBuckets(windowTexts, DURABLE));
    return {
      eventsPerSec: total / ((durableAt - t0) / 1000),
      enqueueEventsPerSec: total / ((enqueuedAt - t0) / 1000),
      events: total,
      entries: load.requests,
      cpu: cpuBetween(before, after, apiMicros),
      batches: summedSample(windowTexts, 'floodgate_worker_batch_events_count'),
      masterCommands,
      replicaCommands,
      durableP50: bucketQuantile(durable, 0.5),
      durableP99: bucketQuantile(durable, 0.99),
    };
  } finally {
    await running.close();
  }
}
