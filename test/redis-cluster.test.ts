import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApiKey } from '../lib/api-keys.js';
import { createQueueRedis, type Redis } from '../lib/redis.js';
import { shardIndexOf, streamShards } from '../lib/shards.js';
import { countEvents, createTestEnv, envVars, eventually, json, spawnFloodgate, startTestApi, type FloodgateProcess, type TestApi, type TestEnv } from './support.js';
import { startRedisCluster, type TestRedisCluster } from './redis-cluster.js';

const SHARDS = 4;
const TENANTS = ['north', 'south', 'east', 'west', 'up', 'down'];

describe('Redis Cluster with sharded streams (3 masters, 3 replicas, STREAM_SHARDS=4)', () => {
  let cluster: TestRedisCluster;
  let env: TestEnv;
  let api: TestApi;
  let redis: Redis;
  const workers: FloodgateProcess[] = [];
  const keys = new Map<string, string>();

  const post = (tenant: string, body: unknown) =>
    fetch(`${api.url}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${keys.get(tenant)}` },
      body: JSON.stringify(body),
    });
  const backlog = async () => (await Promise.all(streamShards(env.config).map((s) => redis.xlen(s.streamKey)))).reduce((a, b) => a + b, 0);

  before(async () => {
    cluster = await startRedisCluster(3);
    env = await createTestEnv({ REDIS_CLUSTER_NODES: cluster.seeds, STREAM_SHARDS: String(SHARDS) });
    redis = createQueueRedis(env.config);
    api = await startTestApi(env);
    for (const tenant of TENANTS) keys.set(tenant, (await createApiKey(env.pool, { tenant })).key);
    const vars = envVars(env, { REDIS_CLUSTER_NODES: cluster.seeds, STREAM_SHARDS: String(SHARDS), FLUSH_INTERVAL_MS: '50' });
    for (let i = 0; i < 2; i++) workers.push(await spawnFloodgate(['worker'], vars));
  });
  after(async () => {
    for (const w of workers) w.child.kill('SIGTERM');
    await Promise.all(workers.map((w) => w.exited));
    await api?.close();
    redis?.disconnect();
    await env?.cleanup();
    await cluster?.stop();
  });

  it('spreads tenants over more than one shard, each shard on a tagged key', () => {
    const used = new Set(TENANTS.map((t) => shardIndexOf(t, SHARDS)));
    assert.ok(used.size > 1, 'the test tenants land on several shards');
    assert.deepEqual(
      streamShards(env.config).map((s) => s.streamKey),
      Array.from({ length: SHARDS }, (_, i) => `${env.config.streamKey}:{s${i}}`),
    );
  });

  it('stores every accepted event exactly once, with the ids it answered, read by two workers', async () => {
    const answered: string[] = [];
    const sends = TENANTS.flatMap((tenant) =>
      Array.from({ length: 10 }, async (_, i) => {
        // Half keyed (with a repeat inside each batch), half not.
        const events = Array.from({ length: 20 }, (_, j) => (j < 10 ? { type: 'c', idempotency_key: `k-${i}-${j % 8}` } : { type: 'c', data: { i, j } }));
        const res = await post(tenant, { events });
        assert.equal(res.status, 202, await res.clone().text());
        answered.push(...(await json(res)).ids);
      }),
    );
    await Promise.all(sends);
    // Per tenant: 10 requests × (8 distinct keys + 10 unkeyed).
    const expected = TENANTS.length * 10 * 18;
    await eventually(async () => (await countEvents(env)) === expected && (await backlog()) === 0, `${expected} events stored, every shard drained`, 60_000);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await countEvents(env), expected, 'nothing arrives twice');
    const { rows } = await env.pool.query<{ id: string }>('SELECT id FROM events');
    const ids = new Set(answered);
    assert.ok(rows.every((r) => ids.has(r.id)), 'every stored id was answered');
    // The dedup keys sit in their tenant's shard slot, beside its stream.
    const shard = streamShards(env.config)[shardIndexOf('north', SHARDS)]!;
    assert.ok(await redis.get(`${shard.streamKey}:idem:north:k-0-0`), 'the dedup key lives under the shard tag');
  });

  it('answers a repeated idempotency key with the first id, before and after it is stored', async () => {
    const first = await post('east', { type: 'once', idempotency_key: 'only-once' });
    assert.equal(first.status, 202);
    const [id] = (await json(first)).ids;
    const again = await post('east', { type: 'once', idempotency_key: 'only-once' });
    assert.deepEqual((await json(again)).ids, [id]);
    await eventually(async () => (await env.pool.query("SELECT 1 FROM events WHERE idempotency_key = 'only-once'")).rowCount === 1, 'stored');
    const later = await post('east', { type: 'once', idempotency_key: 'only-once' });
    assert.deepEqual((await json(later)).ids, [id]);
    const { rows } = await env.pool.query<{ id: string }>("SELECT id FROM events WHERE idempotency_key = 'only-once'");
    assert.deepEqual(rows.map((r) => r.id), [id]);
  });

  it('REDIS_MIN_REPLICAS_ACK: 202 once a replica has the write; 503 dependency_unavailable when too few replicas exist', async () => {
    const acked = await startTestApi(env, { redisMinReplicasAck: 1 });
    const demanding = await startTestApi(env, { redisMinReplicasAck: 2, redisWriteTimeoutMs: 300 });
    try {
      assert.equal((await acked.post({ type: 'acked' })).status, 202);
      const refused = await demanding.post({ type: 'unconfirmed' });
      assert.equal(refused.status, 503);
      assert.equal((await json(refused)).error, 'dependency_unavailable');
    } finally {
      await acked.close();
      await demanding.close();
    }
  });
});
