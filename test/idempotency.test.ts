import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { dedupMarkerKey } from '../app/enqueue.js';
import { dedupHorizonMs } from '../lib/idempotency-keys.js';
import { createLogger } from '../lib/logger.js';
import { createRedis, type Redis } from '../lib/redis.js';
import { decodeEntry } from '../lib/stream-entry.js';
import { createFlusher, type Flusher } from '../workers/flusher.js';
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

/** Events queued on the env's stream so far (in `redis`, the env's own client by default). */
async function queuedEvents(env: TestEnv, redis: Redis = env.redis): Promise<number> {
  const entries = await redis.xrange(env.config.streamKey, '-', '+');
  return entries.reduce((n, [, fields]) => n + decodeEntry(fields[1]!).count, 0);
}

/** The ids Postgres holds for a tenant's key. */
async function storedIds(env: TestEnv, key: string): Promise<string[]> {
  const { rows } = await env.pool.query<{ id: string }>("SELECT id FROM events WHERE tenant = 'acme' AND idempotency_key = $1", [key]);
  return rows.map((r) => r.id);
}

async function ids(res: Response): Promise<string[]> {
  assert.ok(res.status === 201 || res.status === 202, `status ${res.status}`);
  return (await json(res)).ids;
}

describe('a repeated idempotency key is answered with the id stored first', () => {
  let env: TestEnv;
  let api: TestApi;
  let flusher: Flusher;
  before(async () => {
    env = await createTestEnv({ SHED_MODE: 'off' });
    api = await startTestApi(env);
    flusher = createFlusher({
      config: env.config,
      pool: env.pool,
      redis: env.redis,
      logger: createLogger('silent', 'test'),
      consumerName: 'test',
    });
  });
  after(async () => {
    await flusher?.close();
    await api?.close();
    await env?.cleanup();
  });

  it('answers a repeat with the first id and does not queue it again, by header or by body key', async () => {
    const [first] = await ids(await api.post({ type: 'order.paid' }, { 'idempotency-key': 'order-1' }));
    const queued = await queuedEvents(env);
    const [byHeader] = await ids(await api.post({ type: 'order.paid' }, { 'idempotency-key': 'order-1' }));
    const [byBody] = await ids(await api.post({ events: [{ type: 'order.paid', idempotency_key: 'order-1' }] }));
    assert.equal(byHeader, first);
    assert.equal(byBody, first);
    assert.equal(await queuedEvents(env), queued, 'nothing new queued');
  });

  it('answers a key repeated within one batch with the id of its first event', async () => {
    const before = await queuedEvents(env);
    const answered = await ids(
      await api.post({ events: [{ type: 'a', idempotency_key: 'b-1' }, { type: 'a', idempotency_key: 'b-1' }, { type: 'a' }] }),
    );
    assert.equal(answered.length, 3);
    assert.equal(answered[1], answered[0]);
    assert.notEqual(answered[2], answered[0]);
    assert.equal(await queuedEvents(env), before + 2);
  });

  it('stores each key once, under the id every answer gave', async () => {
    const concurrent = await Promise.all(
      Array.from({ length: 20 }, () => api.post({ type: 'race' }, { 'idempotency-key': 'race-1' }).then(ids)),
    );
    const answered = new Set(concurrent.map(([id]) => id));
    assert.equal(answered.size, 1, 'concurrent repeats all get one id');
    await flusher.start();
    await eventually(
      async () => (await storedIds(env, 'race-1')).length === 1 && (await env.redis.xlen(env.config.streamKey)) === 0,
      'the key stored',
    );
    assert.deepEqual(await storedIds(env, 'race-1'), [...answered]);
    assert.deepEqual(await storedIds(env, 'order-1'), [
      (await ids(await api.post({ type: 'order.paid' }, { 'idempotency-key': 'order-1' })))[0],
    ]);
  });
});

describe('the answer to a repeat stays right when Redis forgets', () => {
  const oldMarker = () => String(Date.now() - 2 * dedupHorizonMs(env.config.dedupWindowHours));
  let redis: PrivateRedis;
  // A client of the private Redis (env.redis is the shared one).
  let store: Redis;
  let env: TestEnv;
  let a: TestApi;
  let b: TestApi;
  let flusher: Flusher;
  before(async () => {
    redis = await startPrivateRedis();
    env = await createTestEnv({ REDIS_URL: redis.url, SHED_MODE: 'off', REDIS_WRITE_TIMEOUT_MS: '300', BREAKER_VOLUME_THRESHOLD: '1000' });
    store = createRedis(redis.url);
    // Redis has remembered every key for longer than the dedup horizon: a miss is trusted without asking Postgres.
    await store.set(dedupMarkerKey(env.config.streamKey), oldMarker());
    a = await startTestApi(env);
    b = await startTestApi(env);
    flusher = createFlusher({
      config: env.config,
      pool: env.pool,
      redis: store,
      logger: createLogger('silent', 'test'),
      consumerName: 'test',
    });
  });
  after(async () => {
    await flusher?.close();
    await a?.close();
    await b?.close();
    store?.disconnect();
    await env?.cleanup();
    await redis?.stop();
  });

  it('after critical events were stored straight in Postgres, which Redis never saw', async () => {
    // Both processes learn the (old) marker and trust Redis from now on.
    await ids(await a.post({ type: 'warm' }, { 'idempotency-key': 'warm-a' }));
    await ids(await b.post({ type: 'warm' }, { 'idempotency-key': 'warm-b' }));
    // The stream key holding a string makes every write to it fail while Redis itself stays up with its memory.
    const stream = env.config.streamKey;
    const saved = await store.dumpBuffer(stream);
    await store.del(stream);
    await store.set(stream, 'not a stream');
    const direct = await a.post({ type: 'order.paid' }, { 'idempotency-key': 'direct-1', 'x-priority': 'critical' });
    assert.equal(direct.status, 201, 'stored straight in Postgres');
    const [stored] = await ids(direct);
    await store.del(stream);
    if (saved) await store.restore(stream, 0, saved);

    // A's next keyed write tells every process that Redis missed some keys; B then asks Postgres on a miss.
    await ids(await a.post({ type: 'other' }, { 'idempotency-key': 'after-1' }));
    assert.deepEqual(await ids(await b.post({ type: 'order.paid' }, { 'idempotency-key': 'direct-1' })), [stored]);
    assert.deepEqual(await ids(await a.post({ type: 'order.paid' }, { 'idempotency-key': 'direct-1' })), [stored]);
    assert.deepEqual(await storedIds(env, 'direct-1'), [stored]);
  });

  it('after Redis restarts empty, once the first answer is stored', async () => {
    // Again a marker older than the horizon, which both processes learn and rely on.
    await store.set(dedupMarkerKey(env.config.streamKey), oldMarker());
    const [first] = await ids(await a.post({ type: 'order.paid' }, { 'idempotency-key': 'restart-1' }));
    await ids(await b.post({ type: 'warm' }, { 'idempotency-key': 'warm-b2' }));
    await flusher.start();
    await eventually(async () => (await storedIds(env, 'restart-1')).length === 1, 'the first answer stored');
    await flusher.close();
    await redis.restart();
    await eventually(async () => (await a.post({ type: 'probe' }).then((r) => r.status)) === 202, 'redis back');
    // Both processes relied on a marker the restart erased: each notices and asks Postgres.
    assert.deepEqual(await ids(await a.post({ type: 'order.paid' }, { 'idempotency-key': 'restart-1' })), [first]);
    assert.deepEqual(await ids(await b.post({ type: 'order.paid' }, { 'idempotency-key': 'restart-1' })), [first]);
    assert.equal(await queuedEvents(env, store), 1, 'only the probe queued: the repeats are already stored');
  });
});
