import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApiKey } from '../lib/api-keys.js';
import { createLogger } from '../lib/logger.js';
import { shardIndexOf, streamShards } from '../lib/shards.js';
import { createShardedFlusher } from '../workers/sharded-flusher.js';
import type { Flusher } from '../workers/flusher.js';
import {
  createTestEnv,
  envVars,
  eventually,
  json,
  spawnFloodgate,
  startTestApi,
  type FloodgateProcess,
  type TestApi,
  type TestEnv,
} from './support.js';

const SHARDS = 3;

/** XPENDING's summary: how many entries are pending, and with which consumers. */
type PendingSummary = [number, string | null, string | null, [string, string][] | null];

describe('a worker SIGKILLed while holding entries of several shards', () => {
  let env: TestEnv;
  let api: TestApi;
  let doomed: FloodgateProcess | undefined;
  let successor: Flusher | undefined;
  before(async () => {
    env = await createTestEnv({ STREAM_SHARDS: String(SHARDS), CLAIM_IDLE_MS: '300', FLUSH_INTERVAL_MS: '50' });
    api = await startTestApi(env);
  });
  after(async () => {
    doomed?.child.kill('SIGKILL');
    await successor?.close();
    await api?.close();
    await env?.cleanup();
  });

  it('another worker reclaims every shard (XAUTOCLAIM per shard) and each acknowledged event is stored exactly once', async () => {
    const shards = streamShards(env.config);
    // Two tenants per shard, so every shard has entries pending with the worker when it dies.
    const tenants: string[] = [];
    for (let i = 0; tenants.length < SHARDS * 2; i++) {
      const tenant = `reclaim-${i}`;
      if (tenants.filter((t) => shardIndexOf(t, SHARDS) === shardIndexOf(tenant, SHARDS)).length < 2) tenants.push(tenant);
    }

    // The doomed worker reads everything but writes nothing: it flushes only after 60 s or 100 000 events.
    doomed = await spawnFloodgate(
      ['worker'],
      envVars(env, { STREAM_SHARDS: String(SHARDS), CLAIM_IDLE_MS: '300', FLUSH_INTERVAL_MS: '60000', FLUSH_BATCH_EVENTS: '100000' }),
    );
    const doomedProcess = doomed;
    await eventually(
      async () => (await Promise.all(shards.map((s) => env.redis.exists(s.streamKey)))).every((n) => n === 1),
      'the worker created its consumer group on every shard',
      30_000,
    );

    const acknowledged: string[] = [];
    let entries = 0;
    for (const tenant of tenants) {
      const { key } = await createApiKey(env.pool, { tenant });
      for (let r = 0; r < 3; r++) {
        const res = await fetch(`${api.url}/v1/events`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
          body: JSON.stringify({ events: [{ type: 'held', idempotency_key: `${tenant}-${r}` }, { type: 'held' }, { type: 'held' }] }),
        });
        assert.equal(res.status, 202);
        acknowledged.push(...((await json(res)).ids as string[]));
        entries++;
      }
    }

    const pending = async () =>
      Promise.all(shards.map(async (s) => (await env.redis.xpending(s.streamKey, env.config.consumerGroup)) as PendingSummary));
    await eventually(
      async () => (await pending()).reduce((n, [count]) => n + count, 0) === entries,
      'every entry read and held by the doomed worker',
      30_000,
    );
    for (const [i, [count, , , consumers]] of (await pending()).entries()) {
      assert.ok(count > 0, `shard ${i} has entries pending`);
      assert.deepEqual(
        consumers?.map(([name]) => name),
        [consumers![0]![0]],
        `shard ${i}: all held by one consumer (the doomed worker)`,
      );
    }
    const { rows: before } = await env.pool.query<{ n: string }>('SELECT count(*) AS n FROM events');
    assert.equal(Number(before[0]!.n), 0, 'nothing written before the kill');

    doomedProcess.child.kill('SIGKILL');
    const { signal } = await doomedProcess.exited;
    assert.equal(signal, 'SIGKILL');
    doomed = undefined;

    successor = createShardedFlusher({
      config: env.config,
      pool: env.pool,
      redis: env.redis,
      logger: createLogger('silent', 'test'),
      consumerName: 'successor',
    });
    await successor.start();
    const rescuer = successor;
    await eventually(async () => rescuer.stats.eventsWritten === acknowledged.length, 'every held event written', 30_000);
    await eventually(async () => (await pending()).every(([count]) => count === 0), 'nothing left pending on any shard');

    const { rows } = await env.pool.query<{ id: string }>('SELECT id::text AS id FROM events ORDER BY id');
    assert.deepEqual(
      rows.map((r) => r.id),
      [...acknowledged].sort(),
      'exactly the acknowledged events, each once',
    );
    assert.equal(rescuer.stats.entriesReclaimed, entries, 'every entry came back through a reclaim, none through a fresh read');
    assert.equal(rescuer.stats.deadLettered, 0);
    for (const s of shards) assert.equal(await env.redis.xlen(s.streamKey), 0, `${s.streamKey} drained`);
  });
});
