import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { parseCopyRows } from '../lib/copy-text.js';
import { batchSchema } from '../lib/event-schema.js';
import { createRedis } from '../lib/redis.js';
import { decodeEntry } from '../lib/stream-entry.js';
import { createTestEnv, json, startTestApi, type TestApi, type TestEnv } from './support.js';

const UUIDV7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

async function streamEntries(env: TestEnv) {
  const raw = await env.redis.xrange(env.config.streamKey, '-', '+');
  return raw.map(([, fields]) => decodeEntry(fields[1]!));
}

describe('POST /v1/events', () => {
  let env: TestEnv;
  let api: TestApi;
  before(async () => {
    env = await createTestEnv();
    api = await startTestApi(env);
  });
  after(async () => {
    await api?.close();
    await env?.cleanup();
  });

  it('accepts one event with 202, a UUIDv7 id, and puts it on the stream with tenant and priority', async () => {
    const before = (await streamEntries(env)).length;
    const res = await api.post({ type: 'page.view', source: 'web', value: 3.5, data: { path: '/' } }, { 'x-priority': 'critical' });
    assert.equal(res.status, 202);
    const body = await json(res);
    assert.equal(body.accepted, 1);
    assert.match(body.ids[0], UUIDV7);
    assert.deepEqual(body.rejected, []);
    const entries = await streamEntries(env);
    assert.equal(entries.length, before + 1);
    const entry = entries.at(-1)!;
    assert.equal(entry.tenant, 'acme');
    assert.equal(entry.priority, 'critical');
    assert.equal(entry.count, 1);
    assert.deepEqual(parseCopyRows(entry.rows)[0], {
      id: body.ids[0],
      tenant: 'acme',
      type: 'page.view',
      occurredAt: entry.receivedAt,
      receivedAt: entry.receivedAt,
      source: 'web',
      idempotencyKey: null,
      priority: 'critical',
      value: 3.5,
      data: { path: '/' },
    });
  });

  it('accepts the valid events of a batch, in order, and reports the invalid ones by index', async () => {
    const res = await api.post({ events: [{ type: 'a' }, { type: 'bad type!' }, { type: 'c', timestamp: '2026-11-24T10:00:00.000Z' }] });
    assert.equal(res.status, 202);
    const body = await json(res);
    assert.equal(body.accepted, 2);
    assert.equal(body.ids.length, 2);
    assert.ok(body.ids[0] < body.ids[1], 'ids are time-ordered in request order');
    assert.equal(body.rejected.length, 1);
    assert.equal(body.rejected[0].index, 1);
    assert.equal(body.rejected[0].errors[0].path, '/type');
  });

  it('takes the Idempotency-Key header as the key of a single event', async () => {
    const res = await api.post({ type: 'order.paid' }, { 'idempotency-key': 'order-42' });
    assert.equal(res.status, 202);
    const entry = (await streamEntries(env)).at(-1)!;
    assert.equal(parseCopyRows(entry.rows)[0]!.idempotencyKey, 'order-42');
    assert.equal(entry.priority, 'normal');
  });

  it('accepts UTF-8 however the charset parameter spells it', async () => {
    for (const type of [
      'application/json; charset=utf-8',
      'application/json;charset="UTF-8"',
      'Application/JSON; CHARSET=utf8',
      'application/json; foo=bar',
    ]) {
      const res = await api.post({ type: 'charset' }, { 'content-type': type });
      assert.equal(res.status, 202, type);
      await res.arrayBuffer();
    }
  });

  it('accepts a gzip body', async () => {
    const res = await api.post(gzipSync(JSON.stringify({ events: [{ type: 'zipped' }] })), { 'content-encoding': 'gzip' });
    assert.equal(res.status, 202);
    assert.equal((await json(res)).accepted, 1);
  });

  it('echoes X-Request-Id, or generates one', async () => {
    const echoed = await api.post({ type: 'a' }, { 'x-request-id': 'req-123' });
    assert.equal(echoed.headers.get('x-request-id'), 'req-123');
    const generated = await fetch(`${api.url}/healthz`);
    assert.match(generated.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
  });

  const cases: [string, () => Promise<Response>, number, string][] = [
    ['malformed JSON', () => api.post('{"type":'), 400, 'malformed_json'],
    ['a JSON array body', () => api.post('[{"type":"a"}]'), 400, 'invalid_body'],
    ['an invalid X-Priority', () => api.post({ type: 'a' }, { 'x-priority': 'urgent' }), 400, 'invalid_header'],
    [
      'an Idempotency-Key header on a batch',
      () => api.post({ events: [{ type: 'a' }] }, { 'idempotency-key': 'k-1' }),
      400,
      'idempotency_key_on_batch',
    ],
    [
      'no API key',
      () => fetch(`${api.url}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"type":"a"}' }),
      401,
      'unauthorized',
    ],
    ['an unknown API key', () => api.post({ type: 'a' }, { authorization: 'Bearer fgk_nope' }), 401, 'unauthorized'],
    ['an unknown route', () => fetch(`${api.url}/v1/nope`), 404, 'not_found'],
    // GET /v1/events is the query API's listing; PUT is no method of the route.
    ['a wrong method', () => fetch(`${api.url}/v1/events`, { method: 'PUT' }), 405, 'method_not_allowed'],
    ['a body over the limit', () => api.post({ type: 'a', data: { s: 'x'.repeat(1024 * 1024) } }), 413, 'payload_too_large'],
    ['a batch over the limit', () => api.post({ events: Array.from({ length: 1001 }, () => ({ type: 'a' })) }), 413, 'batch_too_large'],
    [
      'a wrong content type',
      () => api.post('type=a', { 'content-type': 'application/x-www-form-urlencoded' }),
      415,
      'unsupported_media_type',
    ],
    [
      'a charset other than UTF-8',
      () => api.post('{"type":"a"}', { 'content-type': 'application/json; charset=iso-8859-1' }),
      415,
      'unsupported_media_type',
    ],
    [
      'a UTF-16 charset',
      () => api.post('{"type":"a"}', { 'content-type': 'application/json;charset="UTF-16"' }),
      415,
      'unsupported_media_type',
    ],
    ['a wrong content encoding', () => api.post('{"type":"a"}', { 'content-encoding': 'br' }), 415, 'unsupported_encoding'],
    ['every event invalid', () => api.post({ events: [{ type: '' }, { nope: 1 }] }), 422, 'invalid_event'],
    ['an empty batch', () => api.post({ events: [] }), 422, 'empty_batch'],
  ];
  for (const [what, send, status, code] of cases) {
    it(`answers ${status} ${code} to ${what}`, async () => {
      const res = await send();
      assert.equal(res.status, status);
      const body = await json(res);
      assert.equal(body.error, code);
      assert.equal(typeof body.message, 'string');
      assert.equal(body.request_id, res.headers.get('x-request-id'));
    });
  }

  it('names the allowed methods on 405', async () => {
    const res = await fetch(`${api.url}/v1/events`, { method: 'DELETE' });
    assert.equal(res.status, 405);
    assert.match(res.headers.get('allow') ?? '', /POST/);
  });

  it('lists every problem of a rejected single event', async () => {
    const res = await api.post({ type: 'a b', extra: true, value: 'x' });
    assert.equal(res.status, 422);
    const body = await json(res);
    const paths = body.details.rejected[0].errors.map((e: { path: string }) => e.path).sort();
    assert.deepEqual(paths, ['/extra', '/type', '/value']);
  });

  it('serves the OpenAPI document with the event schema', async () => {
    const res = await fetch(`${api.url}/openapi.json`);
    assert.equal(res.status, 200);
    const doc = await json(res);
    assert.equal(doc.openapi, '3.1.0');
    assert.deepEqual(doc.components.schemas.Event.required, ['type']);
    assert.deepEqual(
      doc.components.schemas.Batch,
      batchSchema(env.config.maxBatchEvents, '#/components/schemas/Event'),
      'the batch shape defined once',
    );
    assert.ok(doc.paths['/v1/events'].post.responses['413']);
  });

  it('reports healthy and ready', async () => {
    assert.equal((await fetch(`${api.url}/healthz`)).status, 200);
    const ready = await fetch(`${api.url}/readyz`);
    assert.equal(ready.status, 200);
    assert.deepEqual((await json(ready)).checks, { postgres: 'ok', migrations: 'ok', redis: 'ok' });
  });
});

describe('when Redis cannot take the write', () => {
  let env: TestEnv;
  let api: TestApi;
  before(async () => {
    env = await createTestEnv();
    // Nothing listens on port 1: the write fails as it would with Redis down.
    api = await startTestApi(env, { redisUrl: 'redis://127.0.0.1:1/0', redisWriteTimeoutMs: 500 });
  });
  after(async () => {
    await api?.close();
    await env?.cleanup();
  });

  it('answers 503 dependency_unavailable with Retry-After, and /readyz 503 not_ready', async () => {
    const res = await api.post({ type: 'a' });
    assert.equal(res.status, 503);
    assert.equal((await json(res)).error, 'dependency_unavailable');
    assert.match(res.headers.get('retry-after') ?? '', /^\d+$/);
    const ready = await fetch(`${api.url}/readyz`);
    assert.equal(ready.status, 503);
    const body = await json(ready);
    assert.equal(body.error, 'not_ready');
    assert.deepEqual(body.details, { postgres: 'ok', migrations: 'ok', redis: 'unreachable' });
    assert.match(body.message, /redis/);
  });
});

describe('/readyz when a dependency is down', () => {
  let env: TestEnv;
  let api: TestApi;
  before(async () => {
    env = await createTestEnv();
    // Nothing listens on port 1 of either: the answers must say which check failed, not where it tried.
    api = await startTestApi(env, {
      databaseUrl: 'postgres://floodgate_user@127.0.0.1:1/secret_db',
      redisUrl: 'redis://127.0.0.1:1/0',
      redisWriteTimeoutMs: 500,
    });
  });
  after(async () => {
    await api?.close();
    await env?.cleanup();
  });

  it('names the failed checks without addresses, users or error messages', async () => {
    const ready = await fetch(`${api.url}/readyz`);
    assert.equal(ready.status, 503);
    const text = await ready.text();
    assert.deepEqual(JSON.parse(text).details, { postgres: 'unreachable', migrations: 'unknown', redis: 'unreachable' });
    for (const leak of ['127.0.0.1', ':1', 'ECONNREFUSED', 'floodgate_user', 'secret_db', 'connect'])
      assert.ok(!text.includes(leak), `${leak} in ${text}`);
  });
});

describe('REDIS_URL with a database index', () => {
  let env: TestEnv;
  let api: TestApi;
  before(async () => {
    env = await createTestEnv();
    api = await startTestApi(env, { redisUrl: 'redis://127.0.0.1:6379/7' });
  });
  after(async () => {
    const db7 = createRedis('redis://127.0.0.1:6379/7');
    await db7.del(env.config.streamKey);
    db7.disconnect();
    await api?.close();
    await env?.cleanup();
  });

  it('writes to database N of a /N URL, not database 0', async () => {
    assert.equal((await api.post({ type: 'a' })).status, 202);
    const db7 = createRedis('redis://127.0.0.1:6379/7');
    try {
      assert.equal(await db7.xlen(env.config.streamKey), 1);
      assert.equal(await env.redis.xlen(env.config.streamKey), 0, 'database 0 untouched');
    } finally {
      db7.disconnect();
    }
  });
});
