import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApiKey } from '../lib/api-keys.js';
import { createQueueRedis, type Redis } from '../lib/redis.js';
import { shardIndexOf, streamShards } from '../lib/shards.js';
import {
  countEvents,
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
import { startRedisCluster, type TestRedisCluster } from '../bench/redis-cluster.js';

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
        const events = Array.from({ length: 20 }, (_, j) =>
          j < 10 ? { type: 'c', idempotency_key: `k-${i}-${j % 8}` } : { type: 'c', data: { i, j } },
        );
        const res = await post(tenant, { events });
        assert.equal(res.status, 202, await res.clone().text());
        answered.push(...(await json(res)).ids);
      }),
    );
    await Promise.all(sends);
    // Per tenant: 10 requests × (8 distinct keys + 10 unkeyed).
    const expected = TENANTS.length * 10 * 18;
    await eventually(
      async () => (await countEvents(env)) === expected && (await backlog()) === 0,
      `${expected} events stored, every shard drained`,
      60_000,
    );
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await countEvents(env), expected, 'nothing arrives twice');
    const { rows } = await env.pool.query<{ id: string }>('SELECT id FROM events');
    const ids = new Set(answered);
    assert.ok(
      rows.every((r) => ids.has(r.id)),
      'every stored id was answered',
    );
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
    await eventually(
      async () => (await env.pool.query("SELECT 1 FROM events WHERE idempotency_key = 'only-once'")).rowCount === 1,
      'stored',
    );
    const later = await post('east', { type: 'once', idempotency_key: 'only-once' });
    assert.deepEqual((await json(later)).ids, [id]);
    const { rows } = await env.pool.query<{ id: string }>("SELECT id FROM events WHERE idempotency_key = 'only-once'");
    assert.deepEqual(
      rows.map((r) => r.id),
      [id],
    );
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

  /**
   * Ingest with idempotency keys into one tenant's shard through an API with `minReplicasAck`, SIGKILL that shard's
   * master, wait for its replica's promotion, bring the old master back (as a replica), and drain. Answers which
   * events were answered 202 and are not stored under the id answered.
   */
  async function failoverUnderLoad(tenant: string, minReplicasAck: number, concurrency: number) {
    const acked = await startTestApi(env, { redisMinReplicasAck: minReplicasAck });
    const shardKey = streamShards(env.config)[shardIndexOf(tenant, SHARDS)]!.streamKey;
    const victim = await cluster.masterOf(shardKey);
    const accepted: { key: string; id: string }[] = [];
    const statuses = new Map<number, number>();
    let stop = false;
    let n = 0;
    const sender = async () => {
      while (!stop) {
        const key = `load-${minReplicasAck}-${n++}`;
        const res = await fetch(`${acked.url}/v1/events`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${keys.get(tenant)}` },
          body: JSON.stringify({ type: `failover-${minReplicasAck}`, idempotency_key: key }),
        }).catch(() => undefined);
        if (!res) continue;
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        const body = await json(res).catch(() => ({}));
        if (res.status === 202) accepted.push({ key, id: body.ids[0] });
        else await new Promise((r) => setTimeout(r, 20));
      }
    };
    const senders = Array.from({ length: concurrency }, sender);
    try {
      await eventually(async () => accepted.length >= 50, 'load flowing before the kill');
      await cluster.kill(victim);
      // The replica is promoted once the others mark the master failed (cluster-node-timeout 2 s). Only then may the
      // old master come back: it keeps no data, and back before the failover it would still be master and wipe
      // its replica by resynchronising it.
      await eventually(async () => (await cluster.masterOf(shardKey).catch(() => victim)) !== victim, 'replica promoted', 60_000);
      await cluster.ready(60_000, false);
      // The promoted master has no replica: with REDIS_MIN_REPLICAS_ACK=1 nothing is confirmed (503) until the old
      // master comes back and rejoins as its replica.
      cluster.restart(victim);
      await cluster.ready(60_000, true);
      const before = accepted.length;
      await eventually(async () => accepted.length >= before + 50, 'requests accepted again after the failover', 60_000);
      stop = true;
      await Promise.all(senders);
      // Right after a failover an auto-pipelined read of several slots can meet a MOVED before the client's slot
      // map is refreshed (ioredis retries a pipeline only when all its errors agree): ask again.
      await eventually(async () => (await backlog().catch(() => -1)) === 0, 'every shard drained after the failover', 60_000);
      const { rows } = await env.pool.query<{ id: string; idempotency_key: string }>(
        'SELECT id, idempotency_key FROM events WHERE tenant = $1 AND type = $2',
        [tenant, `failover-${minReplicasAck}`],
      );
      const stored = new Map(rows.map((r) => [r.idempotency_key, r.id]));
      assert.equal(new Set(rows.map((r) => r.idempotency_key)).size, rows.length, 'no key stored twice');
      return { accepted, missing: accepted.filter((a) => stored.get(a.key) !== a.id), statuses: JSON.stringify([...statuses]) };
    } finally {
      stop = true;
      await Promise.all(senders);
      await acked.close();
    }
  }

  it('SIGKILL of a master under load: its replica takes over, and every event answered 202 (replica-acked) is stored once', async () => {
    const { missing, statuses } = await failoverUnderLoad('north', 1, 4);
    assert.deepEqual(missing, [], `every 202 is stored under the id answered (statuses: ${statuses})`);
  });

  it('SIGKILL of a master under load without replica acks (REDIS_MIN_REPLICAS_ACK=0): reports what was lost, recovers by itself', async () => {
    // Nothing is promised here for events acknowledged before the master's death; the count is reported (see
    // docs/scaling.md). What must hold: the shard is served again, drains, and nothing is stored twice. More
    // senders than above, so that more writes are in flight (acknowledged, maybe not yet replicated) at the kill.
    const { accepted, missing, statuses } = await failoverUnderLoad('north', 0, 16);
    console.log(
      `# REDIS_MIN_REPLICAS_ACK=0: ${missing.length} of ${accepted.length} events answered 202 were lost in the failover (statuses: ${statuses})`,
    );
    assert.ok(accepted.length >= 100);
  });
});
