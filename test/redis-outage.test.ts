import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  createTestEnv,
  eventually,
  json,
  startPrivateRedis,
  startTestApi,
  type PrivateRedis,
  type TestApi,
  type TestEnv,
} from './support.js';

describe('Redis down: the redis_write breaker and the critical fallback to Postgres', () => {
  let redis: PrivateRedis;
  let env: TestEnv;
  let api: TestApi;
  before(async () => {
    redis = await startPrivateRedis();
    env = await createTestEnv({
      REDIS_URL: redis.url,
      // Only the breaker answers here: slow writes to a dead Redis must not make the controller shed instead.
      SHED_MODE: 'off',
      REDIS_WRITE_TIMEOUT_MS: '300',
      BREAKER_VOLUME_THRESHOLD: '2',
      BREAKER_RESET_TIMEOUT_MS: '300',
    });
    api = await startTestApi(env);
  });
  after(async () => {
    await api?.close();
    await env?.cleanup();
    await redis?.stop();
  });

  async function redisBreaker(): Promise<string> {
    const res = await fetch(`${api.url}/v1/admin/load`, { headers: { authorization: `Bearer ${api.adminKey}` } });
    return (await json(res)).breakers.redis_write;
  }

  async function status(body: unknown, headers: Record<string, string> = {}): Promise<number> {
    const res = await api.post(body, headers);
    await res.arrayBuffer();
    return res.status;
  }

  it('stores critical events once via Postgres (201), refuses the rest with 503, and resumes 202 when Redis returns', async () => {
    assert.equal(await status({ type: 'warm.up' }), 202);
    assert.equal(await redisBreaker(), 'closed');
    await redis.stop();

    const critical = { 'x-priority': 'critical', 'idempotency-key': 'order-1' };
    const first = await api.post({ type: 'order.paid', data: { amount: 12 } }, critical);
    assert.equal(first.status, 201, 'stored, not queued');
    const stored = await json(first);
    assert.equal(stored.accepted, 1);
    // Already stored: the repeat is accepted (202, nothing new to store) with the id stored first.
    const retry = await api.post({ type: 'order.paid', data: { amount: 12 } }, critical);
    assert.equal(retry.status, 202);
    assert.deepEqual((await json(retry)).ids, stored.ids, 'the repeat is answered with the id stored first');

    const batch = await api.post(
      { events: [{ type: 'a' }, { type: 'b', idempotency_key: 'k-b' }, { type: 'not valid' }] },
      { 'x-priority': 'critical' },
    );
    assert.equal(batch.status, 201);
    const batchBody = await json(batch);
    assert.equal(batchBody.accepted, 2);
    assert.equal(batchBody.rejected[0].index, 2);

    for (const priority of ['normal', 'low']) {
      const res = await api.post({ type: 'page.view' }, { 'x-priority': priority });
      assert.equal(res.status, 503, priority);
      assert.equal((await json(res)).error, 'dependency_unavailable');
      assert.match(res.headers.get('retry-after') ?? '', /^[1-9]\d*$/);
    }

    const { rows: keyed } = await env.pool.query<{ id: string }>(
      "SELECT id FROM events WHERE tenant = 'acme' AND idempotency_key = 'order-1'",
    );
    assert.deepEqual(
      keyed.map((r) => r.id),
      stored.ids,
      'the retried idempotency key is stored once, under the id the first answer gave',
    );
    const { rows: batchRows } = await env.pool.query<{ n: string }>('SELECT count(*) AS n FROM events WHERE id = ANY($1::uuid[])', [
      batchBody.ids,
    ]);
    assert.equal(Number(batchRows[0]!.n), 2);

    await eventually(async () => (await redisBreaker()) === 'open', 'the redis_write breaker to open');
    // Open: critical still lands, without waiting for Redis.
    assert.equal(await status({ type: 'order.refunded' }, { 'x-priority': 'critical' }), 201);

    await redis.restart();
    await eventually(async () => (await status({ type: 'page.view' })) === 202, 'normal traffic queued again (202)');
    assert.equal(await redisBreaker(), 'closed');
    assert.equal(await status({ type: 'order.paid' }, { 'x-priority': 'critical' }), 202, 'critical queued again');
  });
});
