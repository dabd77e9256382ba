import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { createApiKey } from '../lib/api-keys.js';
import { keyInvalidationChannel } from '../lib/key-invalidation.js';
import { liveKeys } from '../lib/live-channel.js';
import { LIVE_CONNECTION_NAME } from '../lib/live-subscriber.js';
import { createQueueRedis, type Redis } from '../lib/redis.js';
import { startRedisCluster, type TestRedisCluster } from '../bench/redis-cluster.js';
import { openSse, openWs, type LiveClient } from './live-clients.js';
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

const run = promisify(execFile);
const TENANTS = ['red', 'green', 'blue', 'amber', 'violet', 'teal'];

/** The port of the node holding a client named `name` (CLIENT LIST on every node); undefined when none does. */
async function nodeWithClient(cluster: TestRedisCluster, name: string): Promise<number | undefined> {
  for (const port of cluster.ports) {
    const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), 'CLIENT', 'LIST'], { timeout: 5000 }).catch(() => ({
      stdout: '',
    }));
    if (stdout.includes(` name=${name} `)) return port;
  }
  return undefined;
}

describe('live view and key revocations on a Redis Cluster (3 masters, 3 replicas)', () => {
  let cluster: TestRedisCluster;
  let env: TestEnv;
  let api: TestApi;
  let redis: Redis;
  let worker: FloodgateProcess;
  const keys = new Map<string, string>();
  const clients: LiveClient[] = [];

  const post = async (tenant: string, events: Record<string, unknown>[]) => {
    for (;;) {
      const res = await fetch(`${api.url}/v1/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${keys.get(tenant)}` },
        body: JSON.stringify({ events }),
      });
      // During a failover the shard's slot is briefly unserved (503): the client retries, as a client would.
      if (res.status === 503) {
        await res.arrayBuffer();
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      assert.equal(res.status, 202, await res.clone().text());
      return (await json(res)).ids as string[];
    }
  };
  const ids = (c: LiveClient) => c.events.map((r) => r.event.id as string);

  before(async () => {
    cluster = await startRedisCluster(3);
    const vars = { REDIS_CLUSTER_NODES: cluster.seeds, STREAM_SHARDS: '2', AUTH_CACHE_TTL_MS: '3600000' };
    env = await createTestEnv(vars);
    redis = createQueueRedis(env.config);
    api = await startTestApi(env);
    for (const tenant of TENANTS) keys.set(tenant, (await createApiKey(env.pool, { tenant, scopes: ['ingest', 'read'] })).key);
    worker = await spawnFloodgate(['worker'], envVars(env, { ...vars, FLUSH_INTERVAL_MS: '50' }));
  });
  after(async () => {
    for (const c of clients) c.close();
    worker?.child.kill('SIGTERM');
    await worker?.exited;
    await api?.close();
    redis?.disconnect();
    await env?.cleanup();
    await cluster?.stop();
  });

  it("puts each tenant's live keys in one slot, tenants spread over the masters", async () => {
    const names = liveKeys(env.config.streamKey);
    const masters = new Set<number>();
    for (const tenant of TENANTS) {
      const slots = new Set(
        [names.log(tenant), names.published(tenant), names.listening(tenant), names.channel(tenant)].map((k) =>
          redis.cluster('KEYSLOT', k),
        ),
      );
      assert.equal(new Set(await Promise.all(slots)).size, 1, `${tenant}: one slot`);
      masters.add(await cluster.masterOf(names.log(tenant)));
    }
    assert.ok(masters.size > 1, 'the test tenants live on several masters');
  });

  it("delivers each tenant's events to its connections only, once and in order, over SSE and WebSocket", async () => {
    const watched = new Map(
      await Promise.all(TENANTS.map(async (t) => [t, [await openSse(api.url, keys.get(t)), await openWs(api.url, keys.get(t))]] as const)),
    );
    for (const pair of watched.values()) clients.push(...pair);
    const expected = new Map<string, string[]>();
    for (let round = 0; round < 3; round++) {
      for (const tenant of TENANTS) {
        const sent = await post(tenant, [
          { type: `${tenant}.a`, data: { round } },
          { type: `${tenant}.b`, idempotency_key: `${tenant}-${round}` },
        ]);
        expected.set(tenant, [...(expected.get(tenant) ?? []), ...sent]);
      }
    }
    for (const [tenant, pair] of watched) {
      for (const c of pair) {
        await c.waitForEvents(expected.get(tenant)!.length);
        assert.deepEqual(ids(c), expected.get(tenant), `${tenant}: its own events, once, in order`);
      }
    }
  });

  it('resumes after a Last-Event-ID from the tenant log on its master', async () => {
    const tenant = 'green';
    const [sse] = clients.filter((c, i) => i === TENANTS.indexOf(tenant) * 2);
    const cursor = sse!.events.at(-1)!.id;
    const missed = await post(tenant, [{ type: 'missed.one' }, { type: 'missed.two' }]);
    const resumed = await openSse(api.url, keys.get(tenant), '/v1/events/live', { 'last-event-id': cursor });
    clients.push(resumed);
    assert.deepEqual(
      (await resumed.waitForEvents(2)).map((r) => r.event.id),
      missed,
    );
    assert.deepEqual(resumed.gaps, []);
  });

  it('loses no event when the node holding the subscription dies: it moves to another node and catches up', async () => {
    const port = await nodeWithClient(cluster, LIVE_CONNECTION_NAME);
    assert.ok(port, 'the subscription is on one of the nodes');
    const tenant = 'blue';
    const [sse, ws] = [clients[TENANTS.indexOf(tenant) * 2]!, clients[TENANTS.indexOf(tenant) * 2 + 1]!];
    const before = ids(sse);
    await cluster.kill(port);
    const during = await post(tenant, [{ type: 'during.failover' }]);
    await eventually(async () => (await nodeWithClient(cluster, LIVE_CONNECTION_NAME)) !== undefined, 'subscribed on another node', 30_000);
    const later = await post(tenant, [{ type: 'after.failover' }]);
    for (const c of [sse, ws]) {
      await c.waitForEvents(before.length + 2, 30_000);
      assert.deepEqual(ids(c), [...before, ...during, ...later], 'every event once, in order');
    }
    // Bring the cluster back to full strength (the node rejoins, as a replica if it had been a master).
    await eventually(
      async () =>
        (await cluster.ready(5000, false).then(
          () => true,
          () => false,
        )) === true,
      'cluster ok',
      60_000,
    );
    cluster.restart(port);
    await cluster.ready(60_000, true);
  });

  it('announces revoked keys over the cluster: a key cached for an hour is refused at once', async () => {
    const channel = keyInvalidationChannel(env.config);
    const subscribers = async () => {
      let n = 0;
      for (const port of cluster.ports) {
        const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), 'PUBSUB', 'NUMSUB', channel]).catch(() => ({
          stdout: '',
        }));
        n += Number(stdout.trim().split('\n')[1] ?? 0);
      }
      return n;
    };
    await eventually(async () => (await subscribers()) >= 1, 'the API process subscribed to the key feed');
    const { key, id } = await createApiKey(env.pool, { tenant: 'revoked' });
    const status = async () => {
      const res = await api.post({ type: 'lifecycle' }, { authorization: `Bearer ${key}` });
      await res.arrayBuffer();
      return res.status;
    };
    assert.equal(await status(), 202);
    const lookups = async () => Number(/floodgate_auth_key_lookups_total\{result="valid"\} (\d+)/.exec(await api.metrics())?.[1]);
    const looked = await lookups();
    // Fed by the announcements, the process keeps the key cached past the one-second revalidation it uses unfed.
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await status(), 202);
    assert.equal(await lookups(), looked, 'the cached key was not looked up again: the process is fed');
    const revoked = await spawnFloodgate(
      ['keys', 'revoke', String(id)],
      envVars(env, { REDIS_CLUSTER_NODES: env.config.redisClusterNodes.map((n) => `${n.host}:${n.port}`).join(',') }),
    );
    const done = await revoked.exited;
    assert.equal(done.code, 0, done.stderr);
    assert.doesNotMatch(done.stderr, /could not announce/);
    await eventually(async () => (await status()) === 401, 'the revoked key refused', 10_000);
  });
});
