import assert from 'node:assert/strict';
import { createApiKey } from '../lib/api-keys.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startLocalPostgres, type LocalService } from '../cli/local-services.js';
import type { Config } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { setQueuePersistence } from '../lib/pg-queue.js';
import { createPgFlusher, type PgFlusher } from '../workers/pg-flusher.js';
import {
  countEvents,
  createTestEnv,
  envVars,
  eventually,
  freePort,
  json,
  spawnFloodgate,
  startTestApi,
  type TestApi,
  type TestEnv,
} from './support.js';
import { assertRollupsMatchEvents } from './rollup-support.js';

/** A TCP listener standing in for Redis: QUEUE=postgres must never connect to it. */
async function redisTrap(): Promise<{ url: string; connections: () => number; close: () => Promise<void> }> {
  let connections = 0;
  const server: Server = createServer((socket) => {
    connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `redis://127.0.0.1:${port}/0`,
    connections: () => connections,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

async function queueRows(env: TestEnv): Promise<number> {
  const { rows } = await env.pool.query<{ n: string }>('SELECT count(*) AS n FROM event_queue');
  return Number(rows[0]!.n);
}

function flusherFor(env: TestEnv, config: Config): PgFlusher {
  return createPgFlusher({ config, pool: env.pool, logger: createLogger('silent', 'pg-flusher-test') });
}

describe('QUEUE=postgres: the queue is a Postgres table', () => {
  let env: TestEnv;
  let api: TestApi;
  let trap: Awaited<ReturnType<typeof redisTrap>>;
  let config: Config;
  before(async () => {
    trap = await redisTrap();
    env = await createTestEnv({ QUEUE: 'postgres', FLUSH_INTERVAL_MS: '20' });
    config = Object.freeze({ ...env.config, redisUrl: trap.url });
    api = await startTestApi(env, { redisUrl: trap.url });
  });
  after(async () => {
    await api?.close();
    await env?.cleanup();
    await trap?.close();
  });

  it('ingests end to end: every accepted event stored exactly once, the queue emptied, and Redis never contacted', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const res = await api.post({ events: Array.from({ length: 25 }, (_, j) => ({ type: 'pg.e2e', data: { i, j } })) });
      assert.equal(res.status, 202);
      ids.push(...(await json(res)).ids);
    }
    assert.ok((await queueRows(env)) > 0, 'accepted requests wait in the queue table');
    const flusher = flusherFor(env, config);
    await flusher.start();
    try {
      await eventually(async () => (await countEvents(env, 'acme')) >= ids.length && (await queueRows(env)) === 0, 'the queue drained');
    } finally {
      await flusher.close();
    }
    const { rows } = await env.pool.query<{ n: string; d: string }>(
      "SELECT count(*) AS n, count(DISTINCT id) AS d FROM events WHERE type = 'pg.e2e'",
    );
    assert.equal(Number(rows[0]!.n), ids.length);
    assert.equal(Number(rows[0]!.d), ids.length);
    const ready = await fetch(`${api.url}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual((await json(ready)).checks, { postgres: 'ok', migrations: 'ok' });
    assert.equal(trap.connections(), 0, 'nothing connected to Redis');
  });

  it('has no live view (it needs Redis, see docs/live.md): the live route answers 404 and nothing connects to Redis', async () => {
    const { key } = await createApiKey(env.pool, { tenant: 'acme', scopes: ['read'] });
    const res = await fetch(`${api.url}/v1/events/live`, { headers: { authorization: `Bearer ${key}`, accept: 'text/event-stream' } });
    assert.equal(res.status, 404);
    assert.equal((await json(res)).error, 'not_found');
    assert.equal(trap.connections(), 0, 'nothing connected to Redis');
  });

  it('answers a repeated idempotency key with the id answered first, queued or stored, and stores the event once', async () => {
    const first = await json(await api.post({ type: 'pg.idem' }, { 'idempotency-key': 'order-1' }));
    const again = await json(await api.post({ type: 'pg.idem' }, { 'idempotency-key': 'order-1' }));
    assert.deepEqual(again.ids, first.ids, 'a repeat while the first is still queued');
    const batch = await json(
      await api.post({
        events: [
          { type: 'pg.idem', idempotency_key: 'order-2' },
          { type: 'pg.idem', idempotency_key: 'order-2' },
          { type: 'pg.idem', idempotency_key: 'order-1' },
          { type: 'pg.idem' },
        ],
      }),
    );
    assert.equal(batch.ids[1], batch.ids[0], 'a key repeated within a batch');
    assert.equal(batch.ids[2], first.ids[0], 'a key sent before, in a batch');
    // Concurrent requests with the same key: one claim wins, everyone gets its id.
    const racing = await Promise.all(
      Array.from({ length: 8 }, () => api.post({ type: 'pg.idem' }, { 'idempotency-key': 'order-3' }).then(json)),
    );
    assert.equal(new Set(racing.map((r) => r.ids[0])).size, 1);

    const flusher = flusherFor(env, config);
    await flusher.start();
    try {
      await eventually(async () => (await queueRows(env)) === 0, 'the queue drained');
    } finally {
      await flusher.close();
    }
    const after = await json(await api.post({ type: 'pg.idem' }, { 'idempotency-key': 'order-2' }));
    assert.equal(after.ids[0], batch.ids[0], 'a repeat after the first was stored');
    const { rows } = await env.pool.query<{ key: string | null; n: string; id: string }>(
      "SELECT idempotency_key AS key, count(*) AS n, min(id::text) AS id FROM events WHERE type = 'pg.idem' GROUP BY 1 ORDER BY 1",
    );
    assert.deepEqual(
      rows.map((r) => [r.key, Number(r.n)]),
      [
        ['order-1', 1],
        ['order-2', 1],
        ['order-3', 1],
        [null, 1],
      ],
    );
    assert.equal(rows[0]!.id, first.ids[0], 'the stored event is the one answered first');
    assert.equal(rows[2]!.id, racing[0].ids[0]);
    assert.equal(await queueRows(env), 0, 'a repeat of a stored key queues nothing');
  });
});

/** Holds a lock that blocks the merge's insert into events (and nothing the worker does at start-up) until released. */
async function blockMerge(env: TestEnv) {
  const lock = await env.pool.connect();
  await lock.query('BEGIN');
  await lock.query('LOCK TABLE events IN SHARE MODE');
  return lock;
}

/** Queues requests as the API does, straight into the table. */
async function fillQueue(env: TestEnv, requests: number, perRequest: number, type: string): Promise<void> {
  const { createPgEnqueuer } = await import('../app/pg-enqueue.js');
  const { createUninstrumentedApiMetrics } = await import('../app/metrics.js');
  const { createQueueWriteBreaker } = await import('../app/redis-breaker.js');
  const { checkEvent } = await import('../lib/event-schema.js');
  const { Registry } = await import('prom-client');
  const logger = createLogger('silent', 'fill');
  const enqueuer = createPgEnqueuer({
    config: env.config,
    pool: env.pool,
    breaker: createQueueWriteBreaker(env.config, new Registry(), logger),
    metrics: createUninstrumentedApiMetrics(),
    logger,
  });
  for (let i = 0; i < requests; i++) {
    const now = Date.now();
    const events = Array.from({ length: perRequest }, (_, j) => {
      const check = checkEvent({ type, ...(j % 2 ? { idempotency_key: `${type}-${i}-${j}` } : {}) }, now, env.config);
      assert.ok(check.ok);
      return check.event;
    });
    await enqueuer.enqueue('acme', 'normal', now, events);
  }
}

async function assertExactlyOnce(env: TestEnv, type: string, expected: number): Promise<void> {
  const { rows } = await env.pool.query<{ n: string; d: string }>(
    'SELECT count(*) AS n, count(DISTINCT id) AS d FROM events WHERE type = $1',
    [type],
  );
  assert.equal(Number(rows[0]!.n), expected, 'every event stored, none twice');
  assert.equal(Number(rows[0]!.d), expected);
  assert.equal(await queueRows(env), 0, 'the queue is empty');
}

describe('QUEUE=postgres: a worker killed mid-batch', () => {
  let env: TestEnv;
  let trap: Awaited<ReturnType<typeof redisTrap>>;
  before(async () => {
    trap = await redisTrap();
    env = await createTestEnv({ QUEUE: 'postgres', FLUSH_INTERVAL_MS: '20' });
  });
  after(async () => {
    await env?.cleanup();
    await trap?.close();
  });

  it('loses and duplicates nothing: its transaction rolls back and another worker writes the rows', async () => {
    await fillQueue(env, 40, 50, 'pg.kill');
    const lock = await blockMerge(env);
    const worker = await spawnFloodgate(
      ['worker'],
      envVars(env, { QUEUE: 'postgres', REDIS_URL: trap.url, FLUSH_INTERVAL_MS: '20', LOG_LEVEL: 'error' }),
    );
    try {
      const waiting = async () =>
        (
          await env.pool.query(
            `SELECT 1 FROM pg_stat_activity WHERE application_name = 'floodgate-worker' AND wait_event_type = 'Lock'
               AND datname = current_database() AND query LIKE '%INSERT INTO events%'`,
          )
        ).rows.length > 0;
      await eventually(waiting, 'the worker mid-batch (rows claimed, staging copied, merge waiting)', 30_000);
      worker.child.kill('SIGKILL');
      const exit = await worker.exited;
      assert.equal(exit.signal, 'SIGKILL');
    } finally {
      worker.child.kill('SIGKILL');
      await lock.query('COMMIT');
      lock.release();
    }
    assert.equal(await countEvents(env), 0, 'the killed worker committed nothing');
    assert.equal(await queueRows(env), 40, 'its claimed rows are back in the queue');
    const flusher = flusherFor(env, env.config);
    await flusher.start();
    try {
      await eventually(async () => (await queueRows(env)) === 0, 'another worker drained the queue', 30_000);
    } finally {
      await flusher.close();
    }
    await assertExactlyOnce(env, 'pg.kill', 40 * 50);
    await assertRollupsMatchEvents(env.pool, 'after a killed worker');
    assert.equal(trap.connections(), 0, 'the worker never connected to Redis');
  });

  it('two workers share the queue without writing a row twice', async () => {
    await fillQueue(env, 60, 20, 'pg.two');
    const small = Object.freeze({ ...env.config, flushBatchEvents: 100 });
    const a = flusherFor(env, small);
    const b = flusherFor(env, small);
    await Promise.all([a.start(), b.start()]);
    try {
      await eventually(async () => (await queueRows(env)) === 0, 'the queue drained', 30_000);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
    await assertExactlyOnce(env, 'pg.two', 60 * 20);
    await assertRollupsMatchEvents(env.pool, 'after two workers');
    assert.equal(a.stats.eventsWritten + b.stats.eventsWritten, 60 * 20);
  });
});

describe('QUEUE=postgres: a Postgres crash', () => {
  let dir: string;
  let postgres: LocalService | undefined;
  let env: TestEnv;
  let adminUrl: string;

  /** Crashes the private server (SIGQUIT: immediate shutdown, crash recovery at the next start) and starts it again. */
  async function crashAndRestart(): Promise<void> {
    const pid = postgres!.pid;
    process.kill(pid, 'SIGQUIT');
    await eventually(async () => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    }, 'postgres gone');
    postgres = await startLocalPostgres(adminUrl, dir);
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'floodgate-pgq-'));
    adminUrl = `postgres://postgres@127.0.0.1:${await freePort()}/postgres`;
    postgres = await startLocalPostgres(adminUrl, dir);
    env = await createTestEnv({ QUEUE: 'postgres', FLUSH_INTERVAL_MS: '20' }, adminUrl);
  });
  after(async () => {
    await env?.cleanup();
    await postgres?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('logged (the default): every acknowledged event survives and is stored exactly once after recovery', async () => {
    let api = await startTestApi(env);
    const ids: string[] = [];
    for (let i = 0; i < 10; i++)
      ids.push(...(await json(await api.post({ events: Array.from({ length: 10 }, () => ({ type: 'pg.crash' })) }))).ids);
    await crashAndRestart();
    // The API rides out the restart through its pool; a request during the outage was refused, not acknowledged.
    await eventually(async () => (await api.post({ type: 'pg.crash.after' })).status === 202, 'the API accepting again', 30_000);
    await api.close();
    api = await startTestApi(env);
    await api.close();
    assert.equal((await queueRows(env)) >= 10, true, 'the acknowledged requests are still queued');
    const flusher = flusherFor(env, env.config);
    await flusher.start();
    try {
      await eventually(async () => (await queueRows(env)) === 0, 'the queue drained', 30_000);
    } finally {
      await flusher.close();
    }
    const { rows } = await env.pool.query<{ id: string }>("SELECT id::text FROM events WHERE type = 'pg.crash' ORDER BY id");
    assert.deepEqual(
      rows.map((r) => r.id),
      [...ids].sort(),
    );
  });

  it('unlogged: a crash empties the queue, losing acknowledged events (why logged is the default)', async () => {
    assert.equal(await setQueuePersistence(env.pool, 'unlogged'), true);
    const api = await startTestApi(env);
    try {
      for (let i = 0; i < 5; i++) assert.equal((await api.post({ type: 'pg.unlogged' })).status, 202);
    } finally {
      await api.close();
    }
    assert.equal(await queueRows(env), 5);
    await crashAndRestart();
    await eventually(async () => (await queueRows(env).catch(() => -1)) >= 0, 'postgres answering');
    assert.equal(await queueRows(env), 0, 'crash recovery reset the unlogged queue: 5 acknowledged events are gone');
    await setQueuePersistence(env.pool, 'logged');
  });
});
