import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { loadConfig, type Config } from '../lib/config.js';
import { createPool, type Pool } from '../lib/db.js';
import { migrate } from '../lib/migrate.js';
import { ensurePartitions } from '../lib/partitions.js';
import { createRedis, type Redis } from '../lib/redis.js';
import { eventually } from '../bench/processes.js';

/**
 * How tests run the `floodgate` command: `node --import tsx cli/main.ts`, the sources as they are now, never a
 * dist/ that may predate them (bin/floodgate.js runs dist/). Children forked by the command inherit the flags.
 */
export const FLOODGATE_COMMAND: readonly string[] = [
  '--import',
  import.meta.resolve('tsx'),
  fileURLToPath(new URL('../cli/main.ts', import.meta.url)),
];

/** Server URLs the tests use; CI starts both (see .ci/run). */
export const TEST_PG_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
export const TEST_REDIS_URL = 'redis://127.0.0.1:6379/0';

/** A private, migrated database and private stream keys for one test file, and how to remove them. */
export interface TestEnv {
  readonly config: Config;
  readonly pool: Pool;
  readonly redis: Redis;
  readonly databaseUrl: string;
  /** Drops the database and deletes the test's Redis keys. */
  cleanup(): Promise<void>;
}

/**
 * Creates a fresh database (migrated, partitions ready) and unique stream keys; fails loudly if a service is down.
 * `pgAdminUrl` points at another PostgreSQL server (a private one a test started) instead of the shared one.
 */
export async function createTestEnv(env: Record<string, string> = {}, pgAdminUrl = TEST_PG_ADMIN_URL): Promise<TestEnv> {
  const id = randomUUID().replace(/-/g, '').slice(0, 12);
  const dbName = `floodgate_test_${id}`;
  const admin = new pg.Client({ connectionString: pgAdminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  await admin.end();
  const databaseUrl = Object.assign(new URL(pgAdminUrl), { pathname: `/${dbName}` }).href;
  const config = loadConfig({
    DATABASE_URL: databaseUrl,
    REDIS_URL: TEST_REDIS_URL,
    STREAM_KEY: `test:${id}:events`,
    DEAD_LETTER_STREAM_KEY: `test:${id}:dead-letter`,
    CONSUMER_GROUP: `test-${id}`,
    LOG_LEVEL: 'silent',
    API_PROCESSES: '1',
    PORT: '0',
    HOST: '127.0.0.1',
    ...env,
  });
  const pool = createPool(databaseUrl, { max: 5, applicationName: 'floodgate-test' });
  await migrate(pool);
  await ensurePartitions(pool, config);
  const redis = createRedis(TEST_REDIS_URL);
  let cleaned: Promise<void> | undefined;
  return {
    config,
    pool,
    redis,
    databaseUrl,
    cleanup() {
      cleaned ??= (async () => {
        await redis.del(config.streamKey, config.deadLetterStreamKey).catch(() => {});
        await deleteByPrefix(redis, `${config.streamKey}:`).catch(() => {});
        // Per-shard dead-letter streams (STREAM_SHARDS) sit beside the dead-letter key.
        await deleteByPrefix(redis, `${config.deadLetterStreamKey}:`).catch(() => {});
        redis.disconnect();
        await pool.end();
        const a = new pg.Client({ connectionString: pgAdminUrl });
        await a.connect();
        await a.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
        await a.end();
      })();
      return cleaned;
    },
  };
}

/** Deletes every key starting with `prefix` (a test's dedup keys and marker, under its stream key), by SCAN. */
export async function deleteByPrefix(redis: Redis, prefix: string): Promise<void> {
  // Glob characters in the prefix would widen the match; stream keys are [A-Za-z0-9:_.{}-], so escape none but these.
  const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== '0');
}

/** A live API on an ephemeral port over a TestEnv, with one tenant key. */
export interface TestApi {
  readonly url: string;
  readonly key: string;
  readonly adminKey: string;
  post(body: unknown, headers?: Record<string, string>): Promise<Response>;
  /** This process's Prometheus exposition, as its /metrics endpoint would serve it. */
  metrics(): Promise<string>;
  close(): Promise<void>;
}

/** Starts the real HTTP server (createApp + node:http) against the env's database and stream. */
export async function startTestApi(env: TestEnv, overrides: Partial<Config> = {}): Promise<TestApi> {
  const { runApi } = await import('../app/run.js');
  const { createApiKey } = await import('../lib/api-keys.js');
  const { createLogger } = await import('../lib/logger.js');
  const config = Object.freeze({ ...env.config, ...overrides });
  const api = await runApi(config, createLogger('silent', 'api-test'));
  const { key } = await createApiKey(env.pool, { tenant: 'acme' });
  const { key: adminKey } = await createApiKey(env.pool, { tenant: 'ops', scopes: ['ingest', 'admin'] });
  const url = `http://127.0.0.1:${api.port}`;
  return {
    url,
    key,
    adminKey,
    post(body, headers = {}) {
      return fetch(`${url}/v1/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, ...headers },
        body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body),
      });
    },
    metrics: () => api.registry.metrics(),
    close: () => api.close(),
  };
}

/** A response body as loosely typed JSON: tests assert on its shape. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function json(res: Response): Promise<any> {
  return res.json();
}

/** Puts one stream entry on the env's stream exactly as the API does; returns the event ids. */
export async function enqueue(
  env: TestEnv,
  events: Record<string, unknown>[],
  options: { tenant?: string; priority?: 'critical' | 'normal' | 'low'; receivedAt?: number } = {},
): Promise<string[]> {
  const { checkEvent } = await import('../lib/event-schema.js');
  const { encodeEntry, ENTRY_FIELD } = await import('../lib/stream-entry.js');
  const receivedAt = options.receivedAt ?? Date.now();
  const valid = events.map((e) => {
    const check = checkEvent(e, receivedAt, env.config);
    if (!check.ok) throw new Error(`test event invalid: ${JSON.stringify(check.errors)}`);
    return check.event;
  });
  await env.redis.xadd(
    env.config.streamKey,
    '*',
    ENTRY_FIELD,
    encodeEntry(options.tenant ?? 'acme', options.priority ?? 'normal', receivedAt, valid),
  );
  return valid.map((e) => e.id);
}

// Polling lives with the process helpers in bench/, which the cluster helper shares with test/.
export { eventually };

/** Rows in `events` (optionally for one tenant). */
export async function countEvents(env: TestEnv, tenant?: string): Promise<number> {
  const { rows } = await env.pool.query<{ n: string }>(
    tenant ? 'SELECT count(*) AS n FROM events WHERE tenant = $1' : 'SELECT count(*) AS n FROM events',
    tenant ? [tenant] : [],
  );
  return Number(rows[0]!.n);
}

/** Environment variables that point a child process at a TestEnv. */
export function envVars(env: TestEnv, extra: Record<string, string> = {}): Record<string, string> {
  const c = env.config;
  return {
    DATABASE_URL: env.databaseUrl,
    REDIS_URL: c.redisUrl,
    STREAM_KEY: c.streamKey,
    DEAD_LETTER_STREAM_KEY: c.deadLetterStreamKey,
    CONSUMER_GROUP: c.consumerGroup,
    LOG_LEVEL: 'warn',
    METRICS_PORT: '0',
    WORKER_METRICS_PORT: '0',
    ...extra,
  };
}

/** A `floodgate` child process with its output collected. */
export interface FloodgateProcess {
  readonly child: import('node:child_process').ChildProcess;
  /** Resolves when it exits, with its exit code and everything it printed. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

/** Runs `floodgate ...args` (see FLOODGATE_COMMAND) with only the given environment on top of PATH/HOME. */
export async function spawnFloodgate(args: string[], vars: Record<string, string>): Promise<FloodgateProcess> {
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, [...FLOODGATE_COMMAND, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...vars },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  return { child, exited };
}

/** `floodgate api` (API_PROCESSES=2 by default) and `floodgate worker` over a TestEnv, ready to serve. */
export interface TestCluster {
  readonly api: FloodgateProcess;
  readonly worker: FloodgateProcess;
  readonly url: string;
  /** The cluster primary's aggregated /metrics. */
  readonly metricsUrl: string;
  /** SIGTERM to both; resolves when both have exited. */
  stop(): Promise<void>;
}

/** Spawns the API cluster and a worker (FLUSH_INTERVAL_MS=50) on free ports and waits until the API is ready. */
export async function startCluster(env: TestEnv, apiProcesses = 2): Promise<TestCluster> {
  const [port, metricsPort] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${port}`;
  const api = await spawnFloodgate(
    ['api'],
    envVars(env, { PORT: String(port), HOST: '127.0.0.1', API_PROCESSES: String(apiProcesses), METRICS_PORT: String(metricsPort) }),
  );
  const worker = await spawnFloodgate(['worker'], envVars(env, { FLUSH_INTERVAL_MS: '50' }));
  const stop = async () => {
    for (const p of [api, worker]) p.child.kill('SIGTERM');
    await Promise.all([api.exited, worker.exited]);
  };
  try {
    await eventually(async () => (await fetch(`${url}/readyz`).catch(() => null))?.status === 200, 'api ready', 30_000);
  } catch (err) {
    await stop();
    throw err;
  }
  return { api, worker, url, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`, stop };
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const { freePort: find } = await import('../bench/processes.js');
  return find();
}

/** A redis-server owned by one test, which may pause, stop or restart it without disturbing anything else. */
export interface PrivateRedis {
  readonly url: string;
  readonly port: number;
  /** Kills it (SIGTERM) and waits for it to exit; it keeps no data. */
  stop(): Promise<void>;
  /** Starts it again, empty, on the same port. */
  restart(): Promise<void>;
}

/** Starts a private redis-server on a free port (no persistence) and waits until it answers. */
export async function startPrivateRedis(): Promise<PrivateRedis> {
  const { spawn } = await import('node:child_process');
  const { mkdtemp, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { Redis } = await import('ioredis');
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}/0`;
  let child: import('node:child_process').ChildProcess | undefined;
  let dir: string | undefined;

  async function start(): Promise<void> {
    dir = await mkdtemp(`${tmpdir()}/floodgate-redis-`);
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
      stdio: 'ignore',
    });
    const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => 50 });
    probe.on('error', () => {});
    try {
      await eventually(async () => (await probe.ping().catch(() => '')) === 'PONG', 'private redis-server up', 10_000);
    } finally {
      probe.disconnect();
    }
  }

  async function stop(): Promise<void> {
    const running = child;
    child = undefined;
    if (running && running.exitCode === null && running.signalCode === null) {
      const exited = new Promise((r) => running.once('exit', r));
      running.kill('SIGTERM');
      await exited;
    }
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  }

  await start();
  return {
    url,
    port,
    stop,
    async restart() {
      await stop();
      await start();
    },
  };
}
