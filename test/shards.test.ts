import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApiKey } from '../lib/api-keys.js';
import { defaultConfig, loadConfig } from '../lib/config.js';
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
