import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { createRedis } from '../lib/redis.js';
import { countEvents, createTestEnv, enqueue, envVars, eventually, spawnFloodgate, startPrivateRedis, type TestEnv } from './support.js';

/** True once the worker's flush statement (not its start-up maintenance) waits on the test's lock. */
async function flushWaitingOnLock(env: TestEnv): Promise<boolean> {
  const { rows } = await env.pool.query(
    `SELECT 1 FROM pg_stat_activity
     WHERE application_name = 'floodgate-worker' AND wait_event_type = 'Lock' AND datname = current_database()
       AND query LIKE '%INSERT INTO events%'`,
  );
  return rows.length > 0;
}

/** Holds a lock that blocks inserts into events (and nothing the worker does at start-up) until released. */
async function blockInserts(env: TestEnv) {
  const lock = await env.pool.connect();
  await lock.query('BEGIN');
  await lock.query('LOCK TABLE events IN SHARE MODE');
  return lock;
}

describe('worker crashes and shutdown', () => {
  let env: TestEnv;
  let redis: Awaited<ReturnType<typeof startPrivateRedis>>;
  let privateClient: Redis;
  before(async () => {
    redis = await startPrivateRedis();
    env = await createTestEnv({ REDIS_URL: redis.url, CLAIM_IDLE_MS: '1000' });
    // createTestEnv's client talks to the shared Redis; this test's stream lives on the private one.
    privateClient = createRedis(redis.url);
    Object.assign(env, { redis: privateClient });
  });
  after(async () => {
    await privateClient?.call('CLIENT', 'UNPAUSE').catch(() => {});
    privateClient?.disconnect();
    await env?.cleanup();
    await redis?.stop();
  });

  const vars = () => envVars(env, { REDIS_URL: redis.url, CLAIM_IDLE_MS: '1000', FLUSH_INTERVAL_MS: '20' });

  async function enqueueMixed(tenant: string, entries: number): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < entries; i++) {
      ids.push(
        ...(await enqueue(
          env,
          Array.from({ length: 50 }, (_, j) => ({ type: 'crash', ...(j % 2 ? { idempotency_key: `${tenant}-${i}-${j}` } : {}) })),
          { tenant },
        )),
      );
    }
    return ids;
  }

  async function assertExactlyOnce(tenant: string, ids: string[]): Promise<void> {
    await eventually(
      async () => (await countEvents(env, tenant)) >= ids.length && (await env.redis.xlen(env.config.streamKey)) === 0,
      `${ids.length} rows for ${tenant}`,
      30_000,
    );
    const { rows } = await env.pool.query<{ n: string; d: string }>(
      'SELECT count(*) AS n, count(DISTINCT id) AS d FROM events WHERE tenant = $1',
      [tenant],
    );
    assert.equal(Number(rows[0]!.n), ids.length, 'no duplicates');
    assert.equal(Number(rows[0]!.d), ids.length);
    const pending = (await env.redis.xpending(env.config.streamKey, env.config.consumerGroup)) as [number];
    assert.equal(pending[0], 0, 'nothing left pending');
  }

  it('loses nothing and duplicates nothing when killed with SIGKILL in the middle of a flush', async () => {
    const ids = await enqueueMixed('killed-mid-flush', 20);
    const lock = await blockInserts(env);
    const doomed = await spawnFloodgate(['worker'], vars());
    await eventually(() => flushWaitingOnLock(env), 'the worker blocked inside its flush transaction');
    doomed.child.kill('SIGKILL');
    await doomed.exited;
    await lock.query('ROLLBACK');
    lock.release();
    assert.equal(await countEvents(env, 'killed-mid-flush'), 0, 'the killed flush committed nothing');

    const successor = await spawnFloodgate(['worker'], vars());
    try {
      await assertExactlyOnce('killed-mid-flush', ids);
    } finally {
      successor.child.kill('SIGTERM');
      await successor.exited;
    }
  });

  it('stores redelivered entries once when killed after COMMIT but before XACK', async () => {
    const ids = await enqueueMixed('killed-before-ack', 10);
    const lock = await blockInserts(env);
    const doomed = await spawnFloodgate(['worker'], vars());
    await eventually(() => flushWaitingOnLock(env), 'the worker blocked inside its flush transaction');
    // Freeze Redis writes, let the flush commit, and kill the worker while its XACK waits.
    await env.redis.call('CLIENT', 'PAUSE', '20000', 'WRITE');
    await lock.query('COMMIT');
    lock.release();
    await eventually(async () => (await countEvents(env, 'killed-before-ack')) === ids.length, 'the flush committed');
    doomed.child.kill('SIGKILL');
    await doomed.exited;
    await env.redis.call('CLIENT', 'UNPAUSE');
    const pending = (await env.redis.xpending(env.config.streamKey, env.config.consumerGroup)) as [number];
    assert.ok(pending[0] > 0, 'the committed entries were left unacknowledged');

    const successor = await spawnFloodgate(['worker'], vars());
    try {
      await assertExactlyOnce('killed-before-ack', ids);
    } finally {
      successor.child.kill('SIGTERM');
      await successor.exited;
    }
  });

  it('writes what it holds before exiting on SIGTERM', async () => {
    const worker = await spawnFloodgate(['worker'], { ...vars(), FLUSH_INTERVAL_MS: '60000', FLUSH_BATCH_EVENTS: '100000' });
    await eventually(async () => {
      const groups = (await env.redis.xinfo('CONSUMERS', env.config.streamKey, env.config.consumerGroup)) as unknown[];
      return groups.length > 0;
    }, 'worker consuming');
    const ids = await enqueueMixed('sigterm', 4);
    await eventually(async () => {
      const pending = (await env.redis.xpending(env.config.streamKey, env.config.consumerGroup)) as [number];
      return pending[0] === 4;
    }, 'the worker holds the entries');
    assert.equal(await countEvents(env, 'sigterm'), 0, 'held, not yet written');
    worker.child.kill('SIGTERM');
    const { code } = await worker.exited;
    assert.equal(code, 0);
    await assertExactlyOnce('sigterm', ids);
  });
});
