import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { createUninstrumentedApiMetrics } from '../app/metrics.js';
import { createQueueWriteBreaker } from '../app/redis-breaker.js';
import { createShardedEnqueuer } from '../app/sharded-enqueue.js';
import { createApiKey } from '../lib/api-keys.js';
import { defaultConfig, loadConfig } from '../lib/config.js';
import { checkEvent } from '../lib/event-schema.js';
import { createLogger } from '../lib/logger.js';
import { shardIndexOf, streamShards } from '../lib/shards.js';
import { createShardedFlusher } from '../workers/sharded-flusher.js';
import type { Flusher } from '../workers/flusher.js';
import { countEvents, createTestEnv, eventually, json, startTestApi, type TestApi, type TestEnv } from './support.js';

describe('stream shards', () => {
  it('by default: the one STREAM_KEY, untagged, as without sharding', () => {
    const config = defaultConfig();
    assert.deepEqual(streamShards(config), [{ index: 0, streamKey: 'floodgate:events', deadLetterStreamKey: 'floodgate:dead-letter' }]);
  });

  it('on a cluster, even one shard carries a hash tag; the dead-letter stream shares it', () => {
    const config = loadConfig({ REDIS_CLUSTER_NODES: '10.0.0.1:7000, 10.0.0.2:7000' });
    assert.deepEqual(config.redisClusterNodes, [
      { host: '10.0.0.1', port: 7000 },
      { host: '10.0.0.2', port: 7000 },
    ]);
    assert.deepEqual(streamShards(config), [
      { index: 0, streamKey: 'floodgate:events:{s0}', deadLetterStreamKey: 'floodgate:dead-letter:{s0}' },
    ]);
  });

  it('refuses cluster seeds that are not host:port, and a shard count of 0', () => {
    assert.throws(
      () => loadConfig({ REDIS_CLUSTER_NODES: 'redis://10.0.0.1:7000', STREAM_SHARDS: '0' }),
      (err: Error) => /REDIS_CLUSTER_NODES[\s\S]*STREAM_SHARDS/.test(err.message),
    );
  });

  it('routes a tenant always to the same shard', () => {
    for (const tenant of ['a', 'acme', 'tenant-42']) {
      const shard = shardIndexOf(tenant, 8);
      assert.ok(shard >= 0 && shard < 8);
      assert.equal(shardIndexOf(tenant, 8), shard);
    }
  });
});

describe('STREAM_SHARDS=3 on a single Redis', () => {
  let env: TestEnv;
  let api: TestApi;
  let flusher: Flusher;
  before(async () => {
    env = await createTestEnv({ STREAM_SHARDS: '3', FLUSH_INTERVAL_MS: '50' });
    api = await startTestApi(env);
    flusher = createShardedFlusher({
      config: env.config,
      pool: env.pool,
      redis: env.redis,
      logger: createLogger('silent', 'test'),
      consumerName: 'shard-test',
    });
    await flusher.start();
  });
  after(async () => {
    await flusher?.close();
    await api?.close();
    await env?.cleanup();
  });

  it('queues each tenant on its shard and stores every event once', async () => {
    const tenants = ['t1', 't2', 't3', 't4', 't5'];
    const shards = streamShards(env.config);
    for (const tenant of tenants) {
      const { key } = await createApiKey(env.pool, { tenant });
      const send = () =>
        fetch(`${api.url}/v1/events`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
          body: JSON.stringify({ events: [{ type: 's', idempotency_key: 'same' }, { type: 's' }] }),
        });
      const first = await json(await send());
      const again = await json(await send());
      assert.equal(again.ids[0], first.ids[0], 'a repeated key is answered with the first id');
      assert.ok(await env.redis.get(`${shards[shardIndexOf(tenant, 3)]!.streamKey}:idem:${tenant}:same`), 'dedup key on the tenant shard');
    }
    // Per tenant: one keyed event and two unkeyed ones.
    await eventually(async () => (await countEvents(env)) === tenants.length * 3, 'every event stored');
    await eventually(
      async () => (await Promise.all(shards.map((s) => env.redis.xlen(s.streamKey)))).every((n) => n === 0),
      'every shard drained',
    );
    assert.equal(flusher.stats.eventsWritten, tenants.length * 3);
  });
});

describe('a worker over several shards', () => {
  let env: TestEnv;
  let flusher: Flusher | undefined;
  before(async () => {
    // A long interval and a large batch: what one flush holds is whatever the reads gathered until it was due.
    env = await createTestEnv({ STREAM_SHARDS: '3', FLUSH_INTERVAL_MS: '1000', FLUSH_BATCH_EVENTS: '5000' });
  });
  after(async () => {
    await flusher?.close();
    await env?.cleanup();
  });

  it('writes the entries of every shard in one batch, then acknowledges each on its own shard', async () => {
    const shards = streamShards(env.config);
    const tenants = ['t1', 't2', 't3', 't4', 't5', 't6'];
    assert.equal(new Set(tenants.map((t) => shardIndexOf(t, 3))).size, 3, 'the tenants cover the three shards');
    const enqueuer = createShardedEnqueuer({
      config: env.config,
      pool: env.pool,
      redis: env.redis,
      redisBreaker: createQueueWriteBreaker(env.config, new Registry(), createLogger('silent', 'test')),
      metrics: createUninstrumentedApiMetrics(),
      logger: createLogger('silent', 'test'),
    });
    const now = Date.now();
    for (const tenant of tenants) {
      for (let i = 0; i < 4; i++) {
        const check = checkEvent({ type: 'batched' }, now, { retentionDays: 30, maxEventDataBytes: 1024 });
        assert.ok(check.ok);
        await enqueuer.enqueue(tenant, 'normal', now, [check.event]);
      }
    }
    flusher = createShardedFlusher({
      config: env.config,
      pool: env.pool,
      redis: env.redis,
      logger: createLogger('silent', 'test'),
      consumerName: 'one-batch',
    });
    await flusher.start();
    await eventually(async () => (await countEvents(env)) === tenants.length * 4, 'every event stored');
    assert.equal(flusher.stats.flushes, 1, 'one write for the entries of all three shards');
    assert.equal(flusher.stats.eventsWritten, tenants.length * 4);
    await eventually(
      async () => (await Promise.all(shards.map((s) => env.redis.xlen(s.streamKey)))).every((n) => n === 0),
      'every shard acknowledged and deleted',
    );
    for (const s of shards) {
      const [pending] = (await env.redis.xpending(s.streamKey, env.config.consumerGroup)) as [number];
      assert.equal(pending, 0, `nothing left pending on ${s.streamKey}`);
    }
  });
});
