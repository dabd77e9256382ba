import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { createApiKey } from '../lib/api-keys.js';
import { CHUNK_MAX_CHARS, liveKeys, parseMessage } from '../lib/live-channel.js';
import { createLivePublisher, type LivePublisher } from '../lib/live-publisher.js';
import { createLogger } from '../lib/logger.js';
import { createFlusher, type Flusher } from '../workers/flusher.js';
import { LiveRefused, WsRefused, openSse, openWs, type LiveClient } from './live-clients.js';
import { createTestEnv, eventually, json, startTestApi, type TestApi, type TestEnv } from './support.js';

/** The flush worker's core with the live publisher wired as the worker wires it. */
interface TestWorker {
  readonly flusher: Flusher;
  readonly publisher: LivePublisher;
  readonly registry: Registry;
  close(): Promise<void>;
}

async function startWorker(env: TestEnv, name: string): Promise<TestWorker> {
  const registry = new Registry();
  const logger = createLogger('silent', 'worker-test');
  const publisher = createLivePublisher({
    redis: env.redis,
    pool: env.pool,
    streamKey: env.config.streamKey,
    resumeWindowMs: env.config.liveResumeWindowMs,
    logger,
    registry,
  });
  const flusher = createFlusher({
    config: env.config,
    pool: env.pool,
    redis: env.redis,
    logger,
    consumerName: name,
    onCommitted: publisher.onCommitted,
  });
  await flusher.start();
  return {
    flusher,
    publisher,
    registry,
    async close() {
      await flusher.close();
      await publisher.close();
    },
  };
}

/** A metric sample's value from an exposition text (0 when absent). */
function sample(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}` : ''}`) && (labels ? true : /^\S+ /.test(l)));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('live view: GET /v1/events/live over SSE and WebSocket', () => {
  let env: TestEnv;
  let api: TestApi;
  let worker: TestWorker | undefined;
  /** acme's key for reading (api.key may only ingest). */
  let readKey: string;
  let otherKey: string;
  const clients: LiveClient[] = [];

  const track = (c: LiveClient) => (clients.push(c), c);
  const post = async (events: Record<string, unknown>[], key?: string) => {
    const res = await api.post({ events }, key ? { authorization: `Bearer ${key}` } : {});
    assert.equal(res.status, 202, await res.clone().text());
    return (await json(res)).ids as string[];
  };
  const ensureWorker = async () => (worker ??= await startWorker(env, 'live-test'));

  before(async () => {
    env = await createTestEnv({ FLUSH_INTERVAL_MS: '20' });
    api = await startTestApi(env);
    readKey = (await createApiKey(env.pool, { tenant: 'acme', scopes: ['read'] })).key;
    otherKey = (await createApiKey(env.pool, { tenant: 'globex', scopes: ['ingest', 'read'] })).key;
  });
  after(async () => {
    for (const c of clients) c.close();
    await worker?.close();
    await api?.close();
    const keys = liveKeys(env.config.streamKey);
    await env.redis.del(keys.log('acme'), keys.log('globex'), keys.listening('acme'), keys.listening('globex'));
    await env?.cleanup();
  });

  it('SSE delivers events only once they are committed, as stored', async () => {
    await worker?.close();
    worker = undefined;
    const sse = track(await openSse(api.url, readKey));
    const ids = await post([
      { type: 'order.created', value: 12.5, data: { n: 1 } },
      { type: 'order.paid', source: 'web' },
    ]);
    await sleep(400);
    assert.equal(sse.events.length, 0, 'accepted but not yet durable: nothing is streamed');
    await ensureWorker();
    const received = await sse.waitForEvents(2);
    assert.deepEqual(
      received.map((r) => r.event.id),
      ids,
    );
    const { rows } = await env.pool.query<{ n: string }>('SELECT count(*) AS n FROM events WHERE id = ANY($1::uuid[])', [ids]);
    assert.equal(Number(rows[0]!.n), 2, 'streamed events are in Postgres');
    const first = received[0]!.event;
    assert.equal(first.type, 'order.created');
    assert.equal(first.value, 12.5);
    assert.deepEqual(first.data, { n: 1 });
    assert.equal(first.priority, 'normal');
    assert.ok(!Number.isNaN(Date.parse(first.timestamp)) && !Number.isNaN(Date.parse(first.received_at)));
    assert.equal(received[1]!.event.source, 'web');
    assert.notEqual(received[0]!.id, received[1]!.id, 'every event has its own resume id');
  });

  it("measures each delivered batch from the worker's commit to its write to the connections", async () => {
    await ensureWorker();
    const sse = track(await openSse(api.url, readKey));
    const before = await api.metrics();
    const countBefore = sample(before, 'floodgate_live_commit_to_send_seconds_count');
    const sumBefore = sample(before, 'floodgate_live_commit_to_send_seconds_sum');
    const posted = Date.now();
    const [id] = await post([{ type: 'commit.timed' }]);
    const received = await sse.waitForEvents(1);
    const elapsed = (Date.now() - posted) / 1000;
    assert.equal(received[0]!.event.id, id);
    await eventually(
      async () => sample(await api.metrics(), 'floodgate_live_commit_to_send_seconds_count') > countBefore,
      'commit → send observed',
    );
    const after = await api.metrics();
    const batches = sample(after, 'floodgate_live_commit_to_send_seconds_count') - countBefore;
    const seconds = sample(after, 'floodgate_live_commit_to_send_seconds_sum') - sumBefore;
    assert.equal(batches, 1, 'one batch delivered, one observation');
    assert.ok(seconds >= 0 && seconds <= elapsed, `commit → send ${seconds}s lies within accept → receipt ${elapsed}s`);
  });

  it('forwards every field as stored, escapes and all', async () => {
    await ensureWorker();
    const sse = track(await openSse(api.url, readKey, '/v1/events/live?type=escape.test'));
    const data = { s: 'line\nbreak\t"quoted" \\ back', u: 'é☃😀', n: [1.5, -0, 1e21, null, true], o: {} };
    const sent = {
      type: 'escape.test',
      source: 'a\tb\\c\nd',
      idempotency_key: 'k\\1',
      value: -0.000123,
      data,
      timestamp: new Date(Math.floor(Date.now() / 1000) * 1000 - 3_600_000 + 678).toISOString(),
    };
    const [id] = await post([sent]);
    const [received] = await sse.waitForEvents(1);
    const { rows } = await env.pool.query('SELECT source, idempotency_key, value, data, occurred_at FROM events WHERE id = $1', [id]);
    const stored = rows[0];
    assert.deepEqual(received!.event, {
      id,
      type: 'escape.test',
      timestamp: stored.occurred_at.toISOString(),
      received_at: received!.event.received_at,
      source: stored.source,
      idempotency_key: stored.idempotency_key,
      priority: 'normal',
      value: stored.value,
      data: stored.data,
    });
    assert.equal(received!.event.source, sent.source);
    assert.deepEqual(received!.event.data, JSON.parse(JSON.stringify(data)));
  });

  it('WebSocket delivers events only once they are committed', async () => {
    await worker?.close();
    worker = undefined;
    const ws = track(await openWs(api.url, readKey));
    const ids = await post([{ type: 'ws.one' }, { type: 'ws.two', data: { deep: { a: [1, 2] } } }]);
    await sleep(400);
    assert.equal(ws.events.length, 0, 'accepted but not yet durable: nothing is sent');
    await ensureWorker();
    const received = await ws.waitForEvents(2);
    assert.deepEqual(
      received.map((r) => r.event.id),
      ids,
    );
    assert.deepEqual(received[1]!.event.data, { deep: { a: [1, 2] } });
  });

  it('filters by exact type and by prefix, on both protocols', async () => {
    await ensureWorker();
    const sse = track(await openSse(api.url, readKey, '/v1/events/live?type=order.created&type=user.*'));
    const ws = track(await openWs(api.url, readKey, '?type=order.created,user.*'));
    await post([
      { type: 'order.created' },
      { type: 'order.paid' },
      { type: 'user.signup' },
      { type: 'user.login' },
      { type: 'users' },
      { type: 'order.created.v2' },
    ]);
    await post([{ type: 'fence' }]);
    // The fence is filtered out too; wait until the unfiltered stream has seen it, then compare.
    const all = track(await openSse(api.url, readKey));
    await post([{ type: 'fence' }]);
    await all.waitForEvents(1);
    await sse.waitForEvents(3);
    await ws.waitForEvents(3);
    await sleep(200);
    for (const c of [sse, ws])
      assert.deepEqual(
        c.events.map((r) => r.event.type),
        ['order.created', 'user.signup', 'user.login'],
      );
  });

  it('refuses malformed filters and resume ids with 400', async () => {
    await assert.rejects(openSse(api.url, readKey, '/v1/events/live?type=bad%20type'), (err: LiveRefused) => {
      assert.equal(err.status, 400);
      assert.equal(JSON.parse(err.body).error, 'invalid_parameter');
      return true;
    });
    await assert.rejects(openSse(api.url, readKey, '/v1/events/live', { 'last-event-id': 'nope' }), (err: LiveRefused) => {
      assert.equal(JSON.parse(err.body).error, 'invalid_header');
      return true;
    });
    await assert.rejects(openWs(api.url, readKey, '?last_event_id=nope'), (err: WsRefused) => {
      assert.equal(err.status, 400);
      assert.equal(JSON.parse(err.body).error, 'invalid_parameter');
      return true;
    });
  });

  it('requires an API key with the read scope on both protocols', async () => {
    await assert.rejects(
      openSse(api.url, undefined),
      (err: LiveRefused) => err.status === 401 && JSON.parse(err.body).error === 'unauthorized',
    );
    await assert.rejects(
      openWs(api.url, undefined),
      (err: WsRefused) => err.status === 401 && JSON.parse(err.body).error === 'unauthorized',
    );
    // The ingest-only key of the same tenant.
    await assert.rejects(openSse(api.url, api.key), (err: LiveRefused) => err.status === 403 && JSON.parse(err.body).error === 'forbidden');
    await assert.rejects(openWs(api.url, api.key), (err: WsRefused) => err.status === 403 && JSON.parse(err.body).error === 'forbidden');
  });

  it("never shows a tenant another tenant's events", async () => {
    await ensureWorker();
    const acme = [track(await openSse(api.url, readKey)), track(await openWs(api.url, readKey))];
    const globex = [track(await openSse(api.url, otherKey)), track(await openWs(api.url, otherKey))];
    const acmeIds = await post([{ type: 'secret.acme' }, { type: 'secret.acme' }]);
    const globexIds = await post([{ type: 'secret.globex' }], otherKey);
    for (const c of acme)
      assert.deepEqual(
        (await c.waitForEvents(2)).map((r) => r.event.id),
        acmeIds,
      );
    for (const c of globex)
      assert.deepEqual(
        (await c.waitForEvents(1)).map((r) => r.event.id),
        globexIds,
      );
    await post([{ type: 'fence' }]);
    await post([{ type: 'fence' }], otherKey);
    // Each connection sees its own tenant's fence: anything of the other tenant would have come before it.
    for (const c of acme) await c.waitForEvents(3);
    for (const c of globex) await c.waitForEvents(2);
    for (const c of acme) assert.ok(c.events.every((r) => r.event.type !== 'secret.globex'));
    for (const c of globex) assert.ok(c.events.every((r) => r.event.type !== 'secret.acme'));
  });

  it('publishes a refused duplicate (same idempotency key) never', async () => {
    await worker?.close();
    worker = undefined;
    const sse = track(await openSse(api.url, readKey, '/v1/events/live?type=dup.*'));
    const [firstId] = await post([{ type: 'dup.once', idempotency_key: 'only-once' }]);
    await post([{ type: 'dup.once', idempotency_key: 'only-once' }]);
    await post([{ type: 'dup.fence' }]);
    await ensureWorker();
    await eventually(async () => sse.events.some((r) => r.event.type === 'dup.fence'), 'the fence');
    assert.deepEqual(
      sse.events.filter((r) => r.event.type === 'dup.once').map((r) => r.event.id),
      [firstId],
    );
  });

  it('resumes after Last-Event-ID (SSE) and last_event_id (WebSocket) without gaps or repeats', async () => {
    await ensureWorker();
    const sse = track(await openSse(api.url, readKey, '/v1/events/live?type=resume.*'));
    const ws = track(await openWs(api.url, readKey, '?type=resume.*'));
    const before = await post([{ type: 'resume.a' }, { type: 'resume.b' }]);
    await sse.waitForEvents(2);
    await ws.waitForEvents(2);
    // Cut after the first event: the second one is resumed from the middle of its batch.
    const sseCursor = sse.events[0]!.id;
    const wsCursor = ws.events[1]!.id;
    sse.close();
    ws.close();
    await Promise.all([sse.ended, ws.ended]);
    const missed = await post([{ type: 'resume.c' }, { type: 'resume.d' }]);
    await post([{ type: 'resume.e' }]).then((ids) => missed.push(...ids));
    // Wait until those are durable and published (seen by a third client).
    const watcher = track(await openSse(api.url, readKey, '/v1/events/live?type=resume.*'));
    const live = await post([{ type: 'resume.f' }]);
    await watcher.waitForEvents(1);

    const sse2 = track(await openSse(api.url, readKey, '/v1/events/live?type=resume.*', { 'last-event-id': sseCursor }));
    const ws2 = track(await openWs(api.url, readKey, `?type=resume.*&last_event_id=${encodeURIComponent(wsCursor)}`));
    const after = await post([{ type: 'resume.g' }]);
    const expectSse = [before[1]!, ...missed, ...live, ...after];
    const expectWs = [...missed, ...live, ...after];
    assert.deepEqual(
      (await sse2.waitForEvents(expectSse.length)).map((r) => r.event.id),
      expectSse,
    );
    assert.deepEqual(
      (await ws2.waitForEvents(expectWs.length)).map((r) => r.event.id),
      expectWs,
    );
    await sleep(200);
    assert.equal(sse2.events.length, expectSse.length, 'no repeats');
    assert.equal(ws2.events.length, expectWs.length, 'no repeats');
    assert.deepEqual([...sse2.gaps, ...ws2.gaps], []);
    assert.ok(sample(await api.metrics(), 'floodgate_live_resumes_total', 'outcome="resumed"') >= 2);
  });

  it('says so when the Last-Event-ID is older than the resume log', async () => {
    await ensureWorker();
    const sse = track(await openSse(api.url, readKey, '/v1/events/live?type=old.*', { 'last-event-id': '1000-0-0' }));
    await eventually(async () => sse.gaps.length === 1, 'a gap notice');
    const ids = await post([{ type: 'old.after' }]);
    assert.deepEqual(
      (await sse.waitForEvents(1)).map((r) => r.event.id),
      ids,
      'and goes on live',
    );
  });

  it('holds one Redis subscription per process, whatever the number of connections', async () => {
    await ensureWorker();
    const many = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        i % 2 ? openWs(api.url, readKey, '?type=none.*') : openSse(api.url, readKey, '/v1/events/live?type=none.*'),
      ),
    );
    many.forEach(track);
    const channel = liveKeys(env.config.streamKey).channel('acme');
    const [, subscribers] = (await env.redis.pubsub('NUMSUB', channel)) as [string, number];
    assert.equal(Number(subscribers), 1);
    const text = await api.metrics();
    assert.ok(sample(text, 'floodgate_live_connections', 'protocol="sse"') >= 20);
    assert.ok(sample(text, 'floodgate_live_connections', 'protocol="ws"') >= 20);
    for (const c of many) c.close();
    await Promise.all(many.map((c) => c.ended));
  });

  it('publishes only for tenants someone is listening to', async () => {
    await ensureWorker();
    const keys = liveKeys(env.config.streamKey);
    const { key } = await createApiKey(env.pool, { tenant: 'unwatched' });
    const publishedBefore = sample(await worker!.registry.metrics(), 'floodgate_live_published_events_total');
    const res = await api.post({ events: [{ type: 'quiet' }, { type: 'quiet' }] }, { authorization: `Bearer ${key}` });
    assert.equal(res.status, 202);
    await eventually(
      async () => (await env.pool.query("SELECT 1 FROM events WHERE tenant = 'unwatched'")).rowCount === 2,
      'unwatched events stored',
    );
    await eventually(async () => worker!.publisher.pending() === 0, 'publisher idle');
    assert.equal(await env.redis.exists(keys.log('unwatched')), 0, 'no resume log for a tenant nobody watches');
    assert.equal(sample(await worker!.registry.metrics(), 'floodgate_live_published_events_total'), publishedBefore);
  });

  it('closes a slow consumer with a reason, holding at most its buffer limit', async () => {
    await ensureWorker();
    const sse = track(await openSse(api.url, readKey, '/v1/events/live?type=bulk'));
    const ws = track(await openWs(api.url, readKey, '?type=bulk'));
    sse.pause();
    ws.pause();
    // 256 KiB of buffer per connection by default; send far more than the socket buffers can take.
    const payload = 'x'.repeat(16 * 1024);
    for (let i = 0; i < 40; i++) await post(Array.from({ length: 50 }, () => ({ type: 'bulk', data: { payload } })));
    // Each reads again once the server has decided to close it, as a slow but live client would. Meanwhile what the
    // process holds for them never passes the limit by more than one batch each.
    let mostHeld = 0;
    const closed = async (protocol: string) => {
      const text = await api.metrics();
      mostHeld = Math.max(mostHeld, sample(text, 'floodgate_live_buffered_bytes'));
      return sample(text, 'floodgate_live_closes_total', `protocol="${protocol}",reason="slow_consumer"`) >= 1;
    };
    await Promise.all([
      eventually(() => closed('sse'), 'the SSE slow consumer closed', 60_000).then(() => sse.resume()),
      eventually(() => closed('ws'), 'the WebSocket slow consumer closed', 60_000).then(() => ws.resume()),
    ]);
    await Promise.all([sse.ended, ws.ended]);
    const oneBatch = 2 * CHUNK_MAX_CHARS;
    assert.ok(mostHeld > 0 && mostHeld <= 2 * (env.config.liveMaxBufferBytes + oneBatch), `held ${mostHeld} bytes for two slow clients`);
    const total = 40 * 50;
    assert.ok(sse.events.length < total, `the SSE client got ${sse.events.length} of ${total}: the rest was never buffered for it`);
    assert.ok(ws.events.length < total, `the WebSocket client got ${ws.events.length} of ${total}`);
    assert.equal(sse.closeReason, 'slow_consumer');
    assert.equal(ws.closeReason, 'slow_consumer');
    assert.equal(ws.closeCode, 1008);
    assert.equal(ws.closeFrameReason, 'slow_consumer');
  });

  it('serves an upgrade request that is not a WebSocket as plain HTTP', async () => {
    const body = JSON.stringify({ type: 'h2c.ignored' });
    const socket = connect({ host: '127.0.0.1', port: Number(new URL(api.url).port) });
    const answer = await new Promise<string>((resolve, reject) => {
      let text = '';
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => {
        text += d;
        if (text.includes('\r\n\r\n') && text.includes('"accepted"')) resolve(text);
      });
      socket.on('error', reject);
      socket.write(
        `POST /v1/events HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n` +
          `Authorization: Bearer ${api.key}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    });
    socket.destroy();
    assert.match(answer, /^HTTP\/1\.1 202 /);
  });

  it('has no live route with LIVE_ENABLED=false', async () => {
    const off = await startTestApi(env, { liveEnabled: false });
    try {
      await assert.rejects(
        openSse(off.url, readKey),
        (err: LiveRefused) => err.status === 404 && JSON.parse(err.body).error === 'not_found',
      );
      await assert.rejects(openWs(off.url, readKey), (err: WsRefused) => err.status === 404);
    } finally {
      await off.close();
    }
  });

  it('ends live connections on shutdown with a close message, without holding the shutdown', async () => {
    // With a shutdown deadline far beyond the test timeout: close() returns only if live connections let it.
    const own = await startTestApi(env, { shutdownTimeoutMs: 600_000 });
    const sse = await openSse(own.url, readKey);
    const ws = await openWs(own.url, readKey);
    await own.close();
    await Promise.all([sse.ended, ws.ended]);
    assert.equal(sse.closeReason, 'server_shutdown');
    assert.equal(ws.closeReason, 'server_shutdown');
    assert.equal(ws.closeCode, 1001);
  });
});

describe('live channel messages', () => {
  it('read with and without the commit time', () => {
    const body = 'a\t{"n":1}\nb\t{"n":2}\n';
    const timed = parseMessage(`5-0\n@1700000000123\n${body}`)!;
    const plain = parseMessage(`5-0\n${body}`)!;
    assert.equal(timed.committedAtMs, 1700000000123);
    assert.equal(plain.committedAtMs, undefined);
    assert.deepEqual(timed.events, plain.events);
    assert.deepEqual(
      plain.events.map((e) => [e.type, e.json, e.cursor]),
      [
        ['a', '{"n":1}', '5-0-0'],
        ['b', '{"n":2}', '5-0-1'],
      ],
    );
  });
});
