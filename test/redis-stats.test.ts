import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { createRedis } from '../lib/redis.js';
import { streamShards } from '../lib/shards.js';
import { registerRedisStats } from '../workers/stats/redis-stats.js';
import { metricTypes, parseExposition, select, value } from './exposition.js';
import { createTestEnv, freePort, type TestEnv } from './support.js';

/** Every family the collector promises, by type. */
const FAMILIES: Record<string, 'gauge' | 'counter'> = {
  floodgate_redis_up: 'gauge',
  floodgate_redis_scrape_duration_seconds: 'gauge',
  floodgate_redis_scrape_errors_total: 'counter',
  floodgate_redis_used_memory_bytes: 'gauge',
  floodgate_redis_maxmemory_bytes: 'gauge',
  floodgate_redis_connected_clients: 'gauge',
  floodgate_redis_ops_per_second: 'gauge',
  floodgate_redis_commands_processed_total: 'counter',
  floodgate_redis_evicted_keys_total: 'counter',
  floodgate_redis_stream_length: 'gauge',
  floodgate_redis_dead_letter_length: 'gauge',
  floodgate_redis_group_exists: 'gauge',
  floodgate_redis_group_pending: 'gauge',
  floodgate_redis_group_lag: 'gauge',
  floodgate_redis_group_entries_read_total: 'counter',
  floodgate_redis_group_consumers: 'gauge',
  floodgate_redis_oldest_pending_age_seconds: 'gauge',
};

/** Scrapes the whole registry, timing it. */
async function scrape(registry: Registry) {
  const began = Date.now();
  const text = await registry.metrics();
  return { text, samples: parseExposition(text), ms: Date.now() - began };
}

describe('Redis stats collector', () => {
  let env: TestEnv;
  before(async () => {
    env = await createTestEnv();
  });
  after(async () => {
    await env?.cleanup();
  });

  const register = (registry: Registry, options: { timeoutMs?: number; redis?: TestEnv['redis'] } = {}) =>
    registerRedisStats({
      registry,
      redis: options.redis ?? env.redis,
      streamKey: env.config.streamKey,
      deadLetterStreamKey: env.config.deadLetterStreamKey,
      consumerGroup: env.config.consumerGroup,
      ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
    });

  it('reports zeros, not errors, while the stream and group do not exist', async () => {
    const registry = new Registry();
    register(registry);
    const { samples } = await scrape(registry);
    const group = { group: env.config.consumerGroup };
    assert.equal(value(samples, 'floodgate_redis_up'), 1);
    assert.deepEqual(select(samples, 'floodgate_redis_scrape_errors_total'), []);
    assert.equal(value(samples, 'floodgate_redis_stream_length', { stream: env.config.streamKey }), 0);
    assert.equal(value(samples, 'floodgate_redis_dead_letter_length', { stream: env.config.deadLetterStreamKey }), 0);
    assert.equal(value(samples, 'floodgate_redis_group_exists', group), 0);
    assert.equal(value(samples, 'floodgate_redis_group_pending', group), 0);
    assert.equal(value(samples, 'floodgate_redis_group_lag', group), 0);
    assert.equal(value(samples, 'floodgate_redis_oldest_pending_age_seconds', group), 0);
  });

  it('reports stream length, dead letters, and the group pending count, lag and oldest pending age', async () => {
    const { streamKey, deadLetterStreamKey, consumerGroup } = env.config;
    await env.redis.xgroup('CREATE', streamKey, consumerGroup, '0', 'MKSTREAM');
    for (let i = 0; i < 3; i++) await env.redis.xadd(streamKey, '*', 'n', String(i));
    await env.redis.xadd(deadLetterStreamKey, '*', 'reason', 'test');
    await env.redis.xreadgroup('GROUP', consumerGroup, 'consumer-1', 'COUNT', 1, 'STREAMS', streamKey, '>');
    await new Promise((resolve) => setTimeout(resolve, 20));

    const registry = new Registry();
    register(registry);
    const { text, samples } = await scrape(registry);
    const types = metricTypes(text);
    for (const [name, type] of Object.entries(FAMILIES)) {
      assert.equal(types.get(name), type, `${name} is a ${type}`);
      if (name !== 'floodgate_redis_scrape_errors_total') assert.ok(select(samples, name).length > 0, `${name} has a sample`);
    }
    assert.deepEqual(
      [...types.keys()].filter((n) => n.startsWith('floodgate_redis_') && !(n in FAMILIES)),
      [],
      'no family missing from this test (and from the report)',
    );
    assert.deepEqual(select(samples, 'floodgate_redis_scrape_errors_total'), []);

    const group = { group: consumerGroup };
    assert.equal(value(samples, 'floodgate_redis_up'), 1);
    assert.equal(value(samples, 'floodgate_redis_stream_length', { stream: streamKey }), 3);
    assert.equal(value(samples, 'floodgate_redis_dead_letter_length', { stream: deadLetterStreamKey }), 1);
    assert.equal(value(samples, 'floodgate_redis_group_exists', group), 1);
    assert.equal(value(samples, 'floodgate_redis_group_pending', group), 1);
    assert.equal(value(samples, 'floodgate_redis_group_lag', group), 2, 'two entries not yet delivered');
    assert.equal(value(samples, 'floodgate_redis_group_entries_read_total', group), 1);
    assert.equal(value(samples, 'floodgate_redis_group_consumers', group), 1);
    const age = value(samples, 'floodgate_redis_oldest_pending_age_seconds', group);
    assert.ok(age >= 0.01 && age < 60, `oldest pending entry is ${age} s old`);
    assert.ok(value(samples, 'floodgate_redis_used_memory_bytes') > 0);
    assert.ok(value(samples, 'floodgate_redis_connected_clients') >= 1);
    assert.ok(value(samples, 'floodgate_redis_commands_processed_total') > 0);
    assert.ok(value(samples, 'floodgate_redis_maxmemory_bytes') >= 0);
  });

  it('keeps reporting lag after acknowledged entries are deleted, as the flusher does', async () => {
    const { streamKey, consumerGroup } = env.config;
    const reply = (await env.redis.xreadgroup('GROUP', consumerGroup, 'consumer-1', 'COUNT', 1, 'STREAMS', streamKey, '>')) as [
      string,
      [string, string[]][],
    ][];
    const ids = (reply[0]?.[1] ?? []).map(([id]) => id);
    assert.equal(ids.length, 1);
    await env.redis
      .multi()
      .xack(streamKey, consumerGroup, ...ids)
      .xdel(streamKey, ...ids)
      .exec();
    const registry = new Registry();
    register(registry);
    const { samples } = await scrape(registry);
    const group = { group: consumerGroup };
    assert.equal(value(samples, 'floodgate_redis_stream_length', { stream: streamKey }), 2);
    assert.equal(value(samples, 'floodgate_redis_group_pending', group), 1);
    assert.equal(value(samples, 'floodgate_redis_group_lag', group), 1, 'one entry not yet delivered');
  });

  it('with STREAM_SHARDS: one series per shard, labelled by its index, for lengths, pending, lag and oldest pending age', async () => {
    const config = {
      ...env.config,
      streamKey: `${env.config.streamKey}:sharded`,
      deadLetterStreamKey: `${env.config.deadLetterStreamKey}:sharded`,
    };
    const shards = streamShards({ ...config, streamShards: 3 });
    const { consumerGroup } = config;
    // Shard 0: a group with one of two entries pending; shard 1: three entries and no group yet; shard 2: nothing.
    await env.redis.xgroup('CREATE', shards[0]!.streamKey, consumerGroup, '0', 'MKSTREAM');
    for (let i = 0; i < 2; i++) await env.redis.xadd(shards[0]!.streamKey, '*', 'n', String(i));
    await env.redis.xreadgroup('GROUP', consumerGroup, 'consumer-1', 'COUNT', 1, 'STREAMS', shards[0]!.streamKey, '>');
    for (let i = 0; i < 3; i++) await env.redis.xadd(shards[1]!.streamKey, '*', 'n', String(i));
    await env.redis.xadd(shards[2]!.deadLetterStreamKey, '*', 'reason', 'test');
    const registry = new Registry();
    registerRedisStats({ registry, redis: env.redis, ...config, shards });
    const { samples } = await scrape(registry);
    const per = (name: string) => select(samples, name).map((s) => [s.labels.shard, s.value]);
    assert.deepEqual(per('floodgate_redis_stream_length'), [
      ['0', 2],
      ['1', 3],
      ['2', 0],
    ]);
    assert.deepEqual(per('floodgate_redis_dead_letter_length'), [
      ['0', 0],
      ['1', 0],
      ['2', 1],
    ]);
    assert.deepEqual(per('floodgate_redis_group_exists'), [
      ['0', 1],
      ['1', 0],
      ['2', 0],
    ]);
    assert.deepEqual(per('floodgate_redis_group_pending'), [
      ['0', 1],
      ['1', 0],
      ['2', 0],
    ]);
    assert.deepEqual(per('floodgate_redis_group_lag'), [
      ['0', 1],
      ['1', 0],
      ['2', 0],
    ]);
    const ages = per('floodgate_redis_oldest_pending_age_seconds');
    assert.deepEqual(
      ages.map(([shard]) => shard),
      ['0', '1', '2'],
    );
    assert.ok(Number(ages[0]![1]) >= 0 && ages[1]![1] === 0 && ages[2]![1] === 0, JSON.stringify(ages));
    assert.equal(select(samples, 'floodgate_redis_stream_length', { shard: '1' })[0]!.labels.stream, shards[1]!.streamKey);
    for (const s of shards) await env.redis.del(s.streamKey, s.deadLetterStreamKey);
  });

  it('shows redis_up 0 within the timeout when nothing listens on the port', async () => {
    const redis = createRedis(`redis://127.0.0.1:${await freePort()}/0`);
    try {
      const registry = new Registry();
      register(registry, { redis, timeoutMs: 1000 });
      const { samples, ms } = await scrape(registry);
      assert.equal(value(samples, 'floodgate_redis_up'), 0);
      assert.ok(ms < 2000, `scrape took ${ms} ms`);
      assert.deepEqual(select(samples, 'floodgate_redis_stream_length'), [], 'no figure without an answer');
      assert.deepEqual(select(samples, 'floodgate_redis_commands_processed_total'), []);
    } finally {
      redis.disconnect();
    }
  });

  it('shows redis_up 0 within the timeout when Redis accepts the connection but never answers', async () => {
    const sockets = new Set<Socket>();
    const server = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    const redis = createRedis(`redis://127.0.0.1:${port}/0`);
    try {
      const registry = new Registry();
      register(registry, { redis, timeoutMs: 500 });
      const { samples, ms } = await scrape(registry);
      assert.equal(value(samples, 'floodgate_redis_up'), 0);
      assert.ok(ms < 1500, `scrape took ${ms} ms`);
      assert.ok(value(samples, 'floodgate_redis_scrape_errors_total', { collector: 'info' }) >= 1);
    } finally {
      redis.disconnect();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
