import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import type { Breaker } from '../lib/breaker.js';
import { createPool, type Pool, type PoolClient } from '../lib/db.js';
import { createLogger } from '../lib/logger.js';
import { createRedis, type Redis } from '../lib/redis.js';
import { createFlusher, createPostgresWriteBreaker, type Flusher } from '../workers/flusher.js';
import { createTestEnv, eventually, json, startTestApi, type TestApi, type TestEnv } from './support.js';

describe('Postgres stalled: the worker holds off, the backlog sheds non-critical traffic, nothing is lost', () => {
  let env: TestEnv;
  let api: TestApi;
  let workerPool: Pool;
  let workerRedis: Redis;
  let breaker: Breaker;
  let flusher: Flusher;
  let lock: PoolClient | undefined;

  before(async () => {
    env = await createTestEnv({
      SHED_MODE: 'enforce',
      // Only the backlog drives shedding here, however slow a busy test machine makes requests.
      SHED_TARGET_P99_MS: '60000',
      SHED_TARGET_EVENT_LOOP_DELAY_MS: '60000',
      SHED_BACKLOG_LOW_ENTRIES: '5',
      SHED_BACKLOG_HIGH_ENTRIES: '15',
      DB_WRITE_TIMEOUT_MS: '500',
      BREAKER_VOLUME_THRESHOLD: '1',
      BREAKER_RESET_TIMEOUT_MS: '500',
      FLUSH_INTERVAL_MS: '20',
    });
    api = await startTestApi(env);
    const logger = createLogger('silent', 'worker-test');
    workerPool = createPool(env.databaseUrl, { max: 3, applicationName: 'floodgate-worker' });
    workerRedis = createRedis(env.config.redisUrl);
    breaker = createPostgresWriteBreaker(env.config, new Registry(), logger);
    flusher = createFlusher({ config: env.config, pool: workerPool, redis: workerRedis, logger, consumerName: 'stall-test', breaker });
    await flusher.start();
  });
  after(async () => {
    await lock?.query('ROLLBACK').catch(() => {});
    lock?.release();
    await api?.close();
    await flusher?.close();
    breaker?.shutdown();
    workerRedis?.disconnect();
    await workerPool?.end();
    await env?.cleanup();
  });

  /** Posts one event; returns its status, the ids of a 2xx and the error code and Retry-After of a refusal. */
  async function send(priority: string): Promise<{ status: number; ids: string[]; error?: string; retryAfter: string | null }> {
    const res = await api.post({ type: 'stall.test', data: { priority } }, { 'x-priority': priority });
    const body = await json(res);
    return { status: res.status, ids: body.ids ?? [], error: body.error, retryAfter: res.headers.get('retry-after') };
  }

  it('keeps entries pending while Postgres is locked, sheds non-critical at the watermark, accepts critical, then drains exactly once', async () => {
    const acknowledged: string[] = [];
    const warm = await send('normal');
    assert.equal(warm.status, 202);
    acknowledged.push(...warm.ids);
    await eventually(async () => (await env.redis.xlen(env.config.streamKey)) === 0, 'the warm-up event written');

    lock = await env.pool.connect();
    await lock.query('BEGIN');
    await lock.query('LOCK TABLE events IN ACCESS EXCLUSIVE MODE');

    let shed: Awaited<ReturnType<typeof send>> | undefined;
    await eventually(async () => {
      const answer = await send('normal');
      if (answer.status === 202) acknowledged.push(...answer.ids);
      else shed = answer;
      return answer.status !== 202;
    }, 'normal traffic shed once the backlog passes its watermark');
    assert.equal(shed?.status, 503);
    assert.equal(shed?.error, 'overloaded');
    assert.match(shed?.retryAfter ?? '', /^[1-9]\d*$/);
    // Normal traffic is shed with a probability that rises from 0 halfway between the watermarks (10 entries) to 1
    // at the high one (15): the first refusal comes somewhere past 10.
    assert.ok((await env.redis.xlen(env.config.streamKey)) > 10, 'the backlog grew in Redis past the point where normal is shed');

    const low = await send('low');
    assert.equal(low.status, 503);
    assert.equal(low.error, 'overloaded');
    for (let i = 0; i < 5; i++) {
      const critical = await send('critical');
      assert.equal(critical.status, 202, 'critical is still accepted');
      acknowledged.push(...critical.ids);
    }
    await eventually(async () => breaker.state() === 'open', 'the postgres_write breaker to open');
    assert.equal(await env.redis.xlen(env.config.streamKey), acknowledged.length - 1, 'nothing acknowledged while Postgres is stalled');

    await lock.query('ROLLBACK');
    lock.release();
    lock = undefined;

    await eventually(async () => (await env.redis.xlen(env.config.streamKey)) === 0, 'the backlog drained', 60_000);
    const { rows } = await env.pool.query<{ n: string; d: string }>(
      'SELECT count(*) AS n, count(DISTINCT id) AS d FROM events WHERE id = ANY($1::uuid[])',
      [acknowledged],
    );
    assert.equal(Number(rows[0]!.d), acknowledged.length, 'every acknowledged event is stored');
    assert.equal(Number(rows[0]!.n), acknowledged.length, 'and stored once');
    assert.equal(await env.pool.query('SELECT 1 FROM events').then((r) => r.rowCount), acknowledged.length, 'nothing else was stored');
    assert.equal(breaker.state(), 'closed');
    await eventually(async () => (await send('normal')).status === 202, 'normal traffic admitted again');
  });
});
