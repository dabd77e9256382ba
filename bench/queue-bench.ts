// Postgres queue vs Redis stream, in one run on one machine: what one enqueue costs (Redis XADD, Postgres logged
// and unlogged insert), how fast a worker drains a backlog, and time-to-durable under a steady load.
// Usage: node --import tsx bench/queue-bench.ts [requests=3000] [eventsPerRequest=10]
// With --topology: events/s durable, CPU per durable event of every process and time-to-durable per queue topology
// (Postgres queue, one Redis, a Redis Cluster with 3 and 6 shards) and worker count, in alternating rounds; see
// bench/queue-topology-run.ts.
//   npm run build && node --import tsx bench/queue-bench.ts --topology [requests=2000] [eventsPerRequest=10] [workers=1,2]
//     [--rounds 6] [--lock FILE] [--hold 270] [--out FILE.json] [--compare-bin OTHER/bin/floodgate.js --compare-label NAME] [--only r1,c3]
// --lock FILE holds an flock on FILE while measuring, at most --hold seconds at a time (released between holds).
// --compare-bin measures the Redis topologies with the workers of another build too (before/after in one run);
// --only pg,r1,r3,c3,c6 picks topologies.
import { Registry } from 'prom-client';
import { createEnqueuer } from '../app/enqueue.js';
import { createUninstrumentedApiMetrics } from '../app/metrics.js';
import { createPgEnqueuer } from '../app/pg-enqueue.js';
import { createQueueWriteBreaker } from '../app/redis-breaker.js';
import type { Config } from '../lib/config.js';
import { checkEvent, type ValidEvent } from '../lib/event-schema.js';
import { createLogger } from '../lib/logger.js';
import { setQueuePersistence } from '../lib/pg-queue.js';
import type { Enqueuer } from '../lib/queue.js';
import { createFlusher } from '../workers/flusher.js';
import { createPgFlusher } from '../workers/pg-flusher.js';
import { createWorkerMetrics } from '../workers/worker-metrics.js';
import { generateEvent, seededRandom } from '../loadtest/events.js';
import { createBenchEnv, type BenchEnv } from './bench-env.js';
import { histogramQuantile } from './queue-topology.js';
import { runTopologyBench } from './queue-topology-run.js';

const TOPOLOGY = process.argv.includes('--topology');
const VALUED = ['--rounds', '--lock', '--hold', '--out', '--compare-bin', '--compare-label', '--only'];
const option = (name: string) => {
  const at = process.argv.indexOf(name);
  return at > 0 ? process.argv[at + 1] : undefined;
};
const ARGS = process.argv.slice(2).filter((a, i, all) => a !== '--topology' && !VALUED.includes(a) && !VALUED.includes(all[i - 1] ?? ''));
const REQUESTS = Number(ARGS[0] ?? (TOPOLOGY ? 2000 : 3000));
const PER_REQUEST = Number(ARGS[1] ?? 10);
const CONCURRENCY = 16;
const STEADY_RATE = 200; // requests per second during the time-to-durable phase
const STEADY_SECONDS = 4;
const logger = createLogger('silent', 'queue-bench');
const random = seededRandom(11);

type Mode = 'redis' | 'postgres-logged' | 'postgres-unlogged';

function events(n: number): ValidEvent[] {
  const now = Date.now();
  return Array.from({ length: n }, (_, i) => {
    const check = checkEvent(generateEvent(random, i), now, { retentionDays: 30, maxEventDataBytes: 32 * 1024 });
    if (!check.ok) throw new Error('invalid generated event');
    return check.event;
  });
}

function enqueuerFor(bench: BenchEnv, config: Config): Enqueuer {
  const breaker = createQueueWriteBreaker(config, new Registry(), logger);
  const metrics = createUninstrumentedApiMetrics();
  if (config.queue === 'postgres') return createPgEnqueuer({ config, pool: bench.pool, breaker, metrics, logger });
  return createEnqueuer({ config, pool: bench.pool, redis: bench.redis, redisBreaker: breaker, metrics, logger });
}

async function countRows(bench: BenchEnv): Promise<number> {
  const { rows } = await bench.pool.query<{ n: string }>('SELECT count(*) AS n FROM events');
  return Number(rows[0]!.n);
}

async function runMode(mode: Mode, bench: BenchEnv): Promise<Record<string, number>> {
  const config = Object.freeze({
    ...bench.config,
    queue: mode === 'redis' ? 'redis' : 'postgres',
    queuePostgresTable: mode === 'postgres-unlogged' ? 'unlogged' : 'logged',
  } as Config);
  await bench.pool.query('TRUNCATE events, idempotency_keys, event_queue');
  if (config.queue === 'postgres') await setQueuePersistence(bench.pool, config.queuePostgresTable);
  await bench.redis.del(config.streamKey);
  await bench.redis.xgroup('CREATE', config.streamKey, config.consumerGroup, '0', 'MKSTREAM');
  const enqueuer = enqueuerFor(bench, config);
  const batches = Array.from({ length: REQUESTS }, () => events(PER_REQUEST));

  // 1. Enqueue only (no worker): requests per second at CONCURRENCY in flight.
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < batches.length) await enqueuer.enqueue('bench', 'normal', Date.now(), batches[next++]!);
    }),
  );
  const enqueueSeconds = (performance.now() - started) / 1000;

  // 2. Drain the backlog with one worker.
  const registry = new Registry();
  const metrics = createWorkerMetrics(registry);
  const worker =
    config.queue === 'postgres'
      ? createPgFlusher({ config, pool: bench.pool, logger, metrics })
      : createFlusher({ config, pool: bench.pool, redis: bench.redis, logger, consumerName: `bench-${mode}`, metrics });
  const drainStart = performance.now();
  await worker.start();
  const total = REQUESTS * PER_REQUEST;
  while ((await countRows(bench)) < total) await new Promise((r) => setTimeout(r, 20));
  const drainSeconds = (performance.now() - drainStart) / 1000;

  // 3. Steady load with the worker running: time-to-durable from a fresh histogram.
  const steadyRegistry = new Registry();
  const steadyMetrics = createWorkerMetrics(steadyRegistry);
  await worker.close();
  const steadyWorker =
    config.queue === 'postgres'
      ? createPgFlusher({ config, pool: bench.pool, logger, metrics: steadyMetrics })
      : createFlusher({ config, pool: bench.pool, redis: bench.redis, logger, consumerName: `bench-${mode}-2`, metrics: steadyMetrics });
  await steadyWorker.start();
  const steady = Array.from({ length: STEADY_RATE * STEADY_SECONDS }, () => events(PER_REQUEST));
  const t0 = performance.now();
  const sends: Promise<unknown>[] = [];
  for (let i = 0; i < steady.length; i++) {
    const due = t0 + (i * 1000) / STEADY_RATE;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    sends.push(enqueuer.enqueue('bench', 'normal', Date.now(), steady[i]!));
  }
  await Promise.all(sends);
  while ((await countRows(bench)) < total + steady.length * PER_REQUEST) await new Promise((r) => setTimeout(r, 20));
  await steadyWorker.close();
  return {
    enqueueRequestsPerSec: REQUESTS / enqueueSeconds,
    enqueueMsPerRequest: (enqueueSeconds * 1000 * CONCURRENCY) / REQUESTS,
    drainEventsPerSec: total / drainSeconds,
    durableP50: await histogramQuantile(steadyRegistry, 'floodgate_time_to_durable_seconds', 0.5),
    durableP99: await histogramQuantile(steadyRegistry, 'floodgate_time_to_durable_seconds', 0.99),
  };
}

if (TOPOLOGY) {
  await runTopologyBench({
    load: { requests: REQUESTS, perRequest: PER_REQUEST, steadyRate: 100, steadySeconds: 2 },
    workerCounts: (ARGS[2] ?? '1,2').split(',').map(Number),
    rounds: Number(option('--rounds') ?? 6),
    lockFile: option('--lock'),
    holdSeconds: Number(option('--hold') ?? 270),
    out: option('--out'),
    compareBin: option('--compare-bin'),
    compareLabel: option('--compare-label'),
    only: option('--only')?.split(','),
  });
} else {
  const bench = await createBenchEnv('queue-bench', 'postgres://postgres@127.0.0.1:5432/floodgate_queue_bench', {
    FLUSH_INTERVAL_MS: '100',
  });
  try {
    console.log(
      `${REQUESTS} requests × ${PER_REQUEST} events, ${CONCURRENCY} in flight; steady ${STEADY_RATE} req/s for ${STEADY_SECONDS} s`,
    );
    console.log('mode                 enqueue req/s  ms/request  drain events/s  durable p50 ≤  p99 ≤');
    const results: Record<string, Record<string, number>> = {};
    for (const mode of ['redis', 'postgres-logged', 'postgres-unlogged'] as const) {
      const r = await runMode(mode, bench);
      results[mode] = r;
      console.log(
        `${mode.padEnd(20)} ${r.enqueueRequestsPerSec!.toFixed(0).padStart(13)} ${r.enqueueMsPerRequest!.toFixed(2).padStart(11)} ${r.drainEventsPerSec!.toFixed(0).padStart(15)} ${`${r.durableP50}s`.padStart(13)} ${`${r.durableP99}s`.padStart(6)}`,
      );
    }
    const base = results.redis!;
    for (const mode of ['postgres-logged', 'postgres-unlogged']) {
      const r = results[mode]!;
      console.log(
        `${mode} / redis: enqueue ${(r.enqueueRequestsPerSec! / base.enqueueRequestsPerSec!).toFixed(2)}×, drain ${(r.drainEventsPerSec! / base.drainEventsPerSec!).toFixed(2)}×`,
      );
    }
  } finally {
    await bench.pool.query('TRUNCATE event_queue').catch(() => {});
    await bench.close();
  }
}
