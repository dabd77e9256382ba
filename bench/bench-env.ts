// What the benchmark scripts share: a private database and stream keys, and a Floodgate (API + worker) they
// start themselves on free ports, with its metrics endpoints.
import { loadConfig, type Config } from '../lib/config.js';
import { createPool, type Pool } from '../lib/db.js';
import { ensureDatabase, migrate } from '../lib/migrate.js';
import { ensurePartitions } from '../lib/partitions.js';
import { createRedis, type Redis } from '../lib/redis.js';
import { FLOODGATE_BIN, freePort, startNode, waitForOk, type Child } from './processes.js';

/** A benchmark's private database, stream keys and connections. */
export interface BenchEnv {
  readonly runId: string;
  readonly databaseUrl: string;
  /** Environment for Floodgate children: the private database and stream keys. */
  readonly env: Readonly<Record<string, string>>;
  readonly config: Config;
  readonly pool: Pool;
  readonly redis: Redis;
  /** Every Redis key of this run starts with it: its streams and, under them, the idempotency keys and marker. */
  readonly keyPrefix: string;
  /** Deletes every key under `keyPrefix` and closes the connections (the database is kept for inspection). */
  close(): Promise<void>;
}

/** Creates (or reuses) `databaseUrl`, migrates it, and picks stream keys no one else uses. */
export async function createBenchEnv(name: string, databaseUrl: string, extra: Record<string, string> = {}): Promise<BenchEnv> {
  const runId = Date.now().toString(36);
  const keyPrefix = `${name}:${runId}:`;
  const base = loadConfig({});
  const env = {
    DATABASE_URL: databaseUrl,
    REDIS_URL: base.redisUrl,
    STREAM_KEY: `${keyPrefix}events`,
    DEAD_LETTER_STREAM_KEY: `${keyPrefix}dead-letter`,
    CONSUMER_GROUP: `${name}-${runId}`,
    LOG_LEVEL: 'warn',
    ...extra,
  };
  const config = loadConfig(env);
  await ensureDatabase(databaseUrl);
  const pool = createPool(databaseUrl, { applicationName: `floodgate-${name}` });
  await migrate(pool);
  await ensurePartitions(pool, config);
  const redis = createRedis(config.redisUrl);
  return {
    runId,
    databaseUrl,
    env,
    config,
    pool,
    redis,
    keyPrefix,
    async close() {
      // The streams, their shards and the idempotency keys claimed under them (each lives for the dedup window).
      await deleteKeysUnder(redis, keyPrefix).catch((err: unknown) => console.error(`could not delete ${keyPrefix}*: ${String(err)}`));
      redis.disconnect();
      await pool.end();
    },
  };
}

/** Deletes every key starting with `prefix` (SCAN, then UNLINK in batches); returns how many were deleted. */
export async function deleteKeysUnder(redis: Redis, prefix: string): Promise<number> {
  // SCAN's pattern is a glob: escape its special characters so that the prefix matches only itself.
  const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
  let deleted = 0;
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) deleted += await redis.unlink(...keys);
  } while (cursor !== '0');
  return deleted;
}

/** A Floodgate the benchmark started: API and (optionally) a worker, with their metrics endpoints. */
export interface StartedFloodgate {
  readonly url: string;
  readonly metricsUrl: string;
  readonly workerMetricsUrl: string | null;
  /** The API process's pid (with API_PROCESSES=1, the process that serves). */
  readonly apiPid: number;
  /** The worker's pid, when one was started. */
  readonly workerPid: number | null;
  /** Stops the API first, then the worker (which flushes what it holds). */
  stop(): Promise<void>;
}

/** Starts `floodgate api` (and `floodgate worker` unless `worker: false`) over the bench env, waits until ready. */
export async function startFloodgate(
  bench: BenchEnv,
  options: { env?: Record<string, string>; worker?: boolean } = {},
): Promise<StartedFloodgate> {
  const [port, metricsPort, workerMetricsPort] = [await freePort(), await freePort(), await freePort()];
  const env = {
    ...bench.env,
    ...options.env,
    HOST: '127.0.0.1',
    PORT: String(port),
    METRICS_PORT: String(metricsPort),
    WORKER_METRICS_PORT: String(workerMetricsPort),
  };
  const children: Child[] = [startNode([FLOODGATE_BIN, 'api'], env)];
  if (options.worker !== false) children.push(startNode([FLOODGATE_BIN, 'worker'], env));
  const stop = async () => {
    for (const child of children) await child.stop();
  };
  try {
    await waitForOk(`http://127.0.0.1:${port}/readyz`);
    if (options.worker !== false) await waitForOk(`http://127.0.0.1:${workerMetricsPort}/metrics`);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url: `http://127.0.0.1:${port}`,
    metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
    workerMetricsUrl: options.worker !== false ? `http://127.0.0.1:${workerMetricsPort}/metrics` : null,
    apiPid: children[0]!.process.pid!,
    workerPid: children[1]?.process.pid ?? null,
    stop,
  };
}
