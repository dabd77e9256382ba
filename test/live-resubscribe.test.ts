import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { createApiKey } from '../lib/api-keys.js';
import { checkEvent } from '../lib/event-schema.js';
import { liveKeys } from '../lib/live-channel.js';
import { createLivePublisher, type LivePublisher } from '../lib/live-publisher.js';
import { LIVE_CONNECTION_NAME } from '../lib/live-subscriber.js';
import { createLogger } from '../lib/logger.js';
import { createRedis, type Redis } from '../lib/redis.js';
import { decodeEntry, encodeEntry, type QueuedEntry } from '../lib/stream-entry.js';
import { openSse, openWs, type LiveClient } from './live-clients.js';
import { createTestEnv, eventually, startPrivateRedis, startTestApi, type PrivateRedis, type TestApi, type TestEnv } from './support.js';

/** A committed batch of `n` events of one tenant, as the flusher hands it to the publisher. */
function batch(tenant: string, n: number, tag: string): { entries: QueuedEntry[]; ids: string[] } {
  const now = Date.now();
  const events = Array.from({ length: n }, (_, i) => {
    const check = checkEvent({ type: 'gap.test', data: { tag, i } }, now, { retentionDays: 30, maxEventDataBytes: 32_768 });
    if (!check.ok) throw new Error('invalid test event');
    return check.event;
  });
  return { entries: [{ queueId: tag, entry: decodeEntry(encodeEntry(tenant, 'normal', now, events)) }], ids: events.map((e) => e.id) };
}

describe('live view: a lost Redis subscription', () => {
  let env: TestEnv;
  let redis: PrivateRedis;
  let client: Redis;
  let api: TestApi;
  let publisher: LivePublisher;
  const clients: LiveClient[] = [];

  before(async () => {
    env = await createTestEnv();
    redis = await startPrivateRedis();
    client = createRedis(redis.url);
    api = await startTestApi(env, { redisUrl: redis.url });
    publisher = createLivePublisher({
      redis: client,
      pool: env.pool,
      streamKey: env.config.streamKey,
      resumeWindowMs: 60_000,
      logger: createLogger('silent', 'test'),
      registry: new Registry(),
    });
  });
  after(async () => {
    for (const c of clients) c.close();
    await publisher?.close();
    await api?.close();
    client?.disconnect();
    await redis?.stop();
    await env?.cleanup();
  });

  it('is restored and catches up from the resume log: no event lost, none repeated', async () => {
    const { key } = await createApiKey(env.pool, { tenant: 'acme', scopes: ['read'] });
    const sse = await openSse(api.url, key);
    const ws = await openWs(api.url, key);
    clients.push(sse, ws);
    const first = batch('acme', 3, 'before');
    void publisher.onCommitted(first.entries, { inserted: 3, duplicates: 0 });
    await sse.waitForEvents(3);
    await ws.waitForEvents(3);

    // Cut the API's subscription and keep it out (no room for a new client) while a batch is published.
    const subscribers = async () =>
      Number(((await client.pubsub('NUMSUB', liveKeys(env.config.streamKey).channel('acme'))) as [string, number])[1]);
    const clientList = String(await client.call('CLIENT', 'LIST'))
      .trim()
      .split('\n');
    const live = clientList.filter((line) => line.includes(` name=${LIVE_CONNECTION_NAME} `));
    assert.equal(live.length, 1, 'one subscription connection for all the connections of the process');
    await client.config('SET', 'maxclients', String(clientList.length - 1));
    await client.call('CLIENT', 'KILL', 'ID', /\bid=(\d+)/.exec(live[0]!)![1]!);
    const during = batch('acme', 4, 'during');
    void publisher.onCommitted(during.entries, { inserted: 4, duplicates: 0 });
    await eventually(async () => publisher.pending() === 0, 'published while the subscription is down');
    assert.equal(await subscribers(), 0, 'the batch was published while nobody was subscribed');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(sse.events.length, 3, 'nothing arrives while the subscription is down');

    await client.config('SET', 'maxclients', '10000');
    await eventually(async () => (await subscribers()) === 1, 'resubscribed');
    const later = batch('acme', 2, 'after');
    void publisher.onCommitted(later.entries, { inserted: 2, duplicates: 0 });
    const expected = [...first.ids, ...during.ids, ...later.ids];
    for (const c of [sse, ws]) {
      assert.deepEqual(
        (await c.waitForEvents(expected.length)).map((r) => r.event.id),
        expected,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(sse.events.length, expected.length, 'no repeats');
    assert.equal(ws.events.length, expected.length, 'no repeats');
  });
});
