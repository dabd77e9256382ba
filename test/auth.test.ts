import assert from 'node:assert/strict';
import autocannon from 'autocannon';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createApiKey, findApiKey } from '../lib/api-keys.js';
import { createPool } from '../lib/db.js';
import { migrate, readMigrations } from '../lib/migrate.js';
import { decodeEntry } from '../lib/stream-entry.js';
import {
  countEvents,
  createTestEnv,
  json,
  startPrivateRedis,
  startTestApi,
  TEST_PG_ADMIN_URL,
  type PrivateRedis,
  type TestApi,
  type TestEnv,
} from './support.js';

/** The value of the series of `name` carrying `label` (e.g. `result="valid"`) in an exposition; 0 when absent. */
function counter(exposition: string, name: string, label: string): number {
  const line = exposition.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(label));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

/** A TestEnv and a live API for the enclosing describe, made from `vars` before its tests and removed after them. */
function liveApi(vars: Record<string, string> = {}): { env: TestEnv; api: TestApi } {
  const live = {} as { env: TestEnv; api: TestApi };
  before(async () => {
    live.env = await createTestEnv(vars);
    live.api = await startTestApi(live.env);
  });
  after(async () => {
    await live.api?.close();
    await live.env?.cleanup();
  });
  return live;
}

const post = (url: string, headers: Record<string, string>, body = '{"type":"a"}') =>
  fetch(`${url}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

describe('on a server with the default settings', () => {
  const live = liveApi();

  describe('key scopes', () => {
    const ingest = (key: string) => post(live.api.url, { 'x-api-key': key });
    const load = (key: string) => fetch(`${live.api.url}/v1/admin/load`, { headers: { authorization: `Bearer ${key}` } });

    it('answers 403 forbidden to a key without the ingest scope on POST /v1/events', async () => {
      const { env } = live;
      const { key } = await createApiKey(env.pool, { tenant: 'acme', scopes: ['read'] });
      const queued = await env.redis.xlen(env.config.streamKey);
      const res = await ingest(key);
      assert.equal(res.status, 403);
      const body = await json(res);
      assert.equal(body.error, 'forbidden');
      assert.match(body.message, /"ingest" scope/);
      assert.equal(await env.redis.xlen(env.config.streamKey), queued, 'nothing was queued');
    });

    it('answers 403 forbidden on /v1/admin/* to a key without the admin scope, 200 to one with it', async () => {
      const { env, api } = live;
      const ingestOnly = await load(api.key);
      assert.equal(ingestOnly.status, 403);
      assert.equal((await json(ingestOnly)).error, 'forbidden');
      const { key: adminOnly } = await createApiKey(env.pool, { tenant: 'ops', scopes: ['admin'] });
      assert.equal((await load(adminOnly)).status, 200);
      const cannotIngest = await ingest(adminOnly);
      assert.equal(cannotIngest.status, 403, 'the admin scope alone does not ingest');
      await cannotIngest.arrayBuffer();
    });
  });

  describe('the priority ceiling', () => {
    it("answers 403 priority_not_allowed to a class above the key's ceiling, and admits its own classes", async () => {
      const { env, api } = live;
      const { key } = await createApiKey(env.pool, { tenant: 'capped', maxPriority: 'low' });
      const queued = await env.redis.xlen(env.config.streamKey);
      for (const claimed of ['critical', 'normal']) {
        const res = await post(api.url, { authorization: `Bearer ${key}`, 'x-priority': claimed });
        assert.equal(res.status, 403, claimed);
        const body = await json(res);
        assert.equal(body.error, 'priority_not_allowed');
        assert.match(body.message, /low/);
      }
      assert.equal(await env.redis.xlen(env.config.streamKey), queued, 'nothing was queued');
      for (const headers of [{ 'x-priority': 'low' }, {}] as Record<string, string>[]) {
        const res = await post(api.url, { authorization: `Bearer ${key}`, ...headers });
        assert.equal(res.status, 202, JSON.stringify(headers));
        await res.arrayBuffer();
      }
    });
  });

  describe('ambiguous credentials', () => {
    it('answers 400 ambiguous_credentials when Authorization and X-Api-Key name different keys', async () => {
      const { env, api } = live;
      const { key: other } = await createApiKey(env.pool, { tenant: 'other' });
      const queued = await env.redis.xlen(env.config.streamKey);
      for (const [authorization, apiKey] of [
        [`Bearer ${api.key}`, other],
        [`Bearer ${api.key}`, 'fgk_unknown'],
        [`Basic ${Buffer.from('a:b').toString('base64')}`, api.key],
      ]) {
        const res = await post(api.url, { authorization: authorization!, 'x-api-key': apiKey! });
        assert.equal(res.status, 400, `${authorization} + ${apiKey}`);
        assert.equal((await json(res)).error, 'ambiguous_credentials');
      }
      assert.equal(await env.redis.xlen(env.config.streamKey), queued, 'nothing was queued');
      for (const [authorization, apiKey] of [
        [`Bearer ${api.key}`, api.key],
        [`Bearer ${api.key}`, ''],
      ]) {
        const res = await post(api.url, { authorization: authorization!, 'x-api-key': apiKey! });
        assert.equal(res.status, 202, `the same key twice, or an empty header, is not ambiguous: "${apiKey}"`);
        await res.arrayBuffer();
      }
    });
  });
});

describe('migration 004: scopes of the keys made before it', () => {
  it('gives every key ingest, and admin keys admin too', async () => {
    const name = `floodgate_test_scopes_${process.pid}_${Date.now()}`;
    const admin = new pg.Client({ connectionString: TEST_PG_ADMIN_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    const pool = createPool(Object.assign(new URL(TEST_PG_ADMIN_URL), { pathname: `/${name}` }).href, {
      max: 2,
      applicationName: 'floodgate-test',
    });
    try {
      const all = await readMigrations();
      await migrate(
        pool,
        all.filter((m) => m.version < 4),
      );
      await pool.query(
        `INSERT INTO api_keys (tenant, key_hash, key_prefix, is_admin) VALUES ('t', sha256('plain'), 'fgk_plain', false), ('t', sha256('boss'), 'fgk_boss', true)`,
      );
      await migrate(pool, all);
      assert.deepEqual((await findApiKey(pool, 'plain'))?.scopes, ['ingest']);
      assert.deepEqual((await findApiKey(pool, 'boss'))?.scopes, ['ingest', 'admin']);
      assert.equal((await findApiKey(pool, 'boss'))?.maxPriority, 'critical', 'old keys keep every class');
    } finally {
      await pool.end();
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    }
  });
});

describe('the priority ceiling while Redis is down (critical events would go straight to Postgres)', () => {
  let redis: PrivateRedis;
  let env: TestEnv;
  let api: TestApi;
  before(async () => {
    redis = await startPrivateRedis();
    // SHED_MODE enforce: a request naming its class meets the early refusal path before Koa.
    env = await createTestEnv({ REDIS_URL: redis.url, SHED_MODE: 'enforce', REDIS_WRITE_TIMEOUT_MS: '200', BREAKER_VOLUME_THRESHOLD: '2' });
    api = await startTestApi(env);
  });
  after(async () => {
    await api?.close();
    await env?.cleanup();
    await redis?.stop();
  });

  it('refuses a low-ceiling key claiming critical: 403, nothing stored, while a critical key gets 201', async () => {
    const { key: capped } = await createApiKey(env.pool, { tenant: 'capped', maxPriority: 'low' });
    const warm = await post(api.url, { authorization: `Bearer ${capped}` });
    assert.equal(warm.status, 202);
    await warm.arrayBuffer();
    await redis.stop();

    const claimed = await post(api.url, { authorization: `Bearer ${capped}`, 'x-priority': 'critical' }, '{"type":"sneaky"}');
    assert.equal(claimed.status, 403);
    assert.equal((await json(claimed)).error, 'priority_not_allowed');
    const allowed = await api.post({ type: 'order.paid' }, { 'x-priority': 'critical' });
    assert.equal(allowed.status, 201, 'the setup does write critical events straight to Postgres');
    await allowed.arrayBuffer();
    assert.equal(await countEvents(env, 'capped'), 0, 'nothing of the capped key reached Postgres');
    assert.equal(await countEvents(env, 'acme'), 1);
  });
});

describe('unauthenticated traffic', () => {
  const live = liveApi({
    AUTH_CACHE_TTL_MS: '3600000',
    AUTH_FAILURE_BURST: '5',
    AUTH_FAILURE_RATE_PER_MINUTE: '1',
    MAX_BODY_BYTES: '65536',
  });

  it('refuses an address past its budget of failed authentications with 429 and no database lookup; cached valid keys still work', async () => {
    const { env, api } = live;
    const { key: uncached } = await createApiKey(env.pool, { tenant: 'late' });
    const warm = await api.post({ type: 'warm' });
    assert.equal(warm.status, 202);
    await warm.arrayBuffer();
    const statuses: number[] = [];
    let refused: Response | undefined;
    for (let i = 0; i < 30; i++) {
      const res = await post(api.url, { authorization: `Bearer fgk_${randomBytes(16).toString('hex')}` });
      statuses.push(res.status);
      if (res.status === 429) refused = res;
      await res.arrayBuffer();
    }
    assert.deepEqual(statuses, [...Array(5).fill(401), ...Array(25).fill(429)]);
    assert.equal(refused!.headers.get('retry-after'), '60', 'one failure a minute refills the budget');
    const exposition = await api.metrics();
    assert.equal(counter(exposition, 'floodgate_auth_key_lookups_total', 'result="unknown"'), 5, 'only the first five cost a lookup');

    const cached = await api.post({ type: 'still.here' });
    assert.equal(cached.status, 202, 'a key the process already verified is not refused');
    await cached.arrayBuffer();
    const late = await post(api.url, { authorization: `Bearer ${uncached}` });
    assert.equal(late.status, 429, 'a key that would need a lookup waits for the budget like any other');
    assert.equal((await json(late)).error, 'too_many_auth_failures');
  });

  it('closes the connection after a 401 on a request with a body instead of reading the rest of it', async () => {
    const { api } = live;
    for (const framing of ['Content-Length: 268435456', 'Transfer-Encoding: chunked']) {
      const socket = connect(Number(new URL(api.url).port), '127.0.0.1');
      await once(socket, 'connect');
      let response = '';
      let closed = false;
      socket.on('data', (d: Buffer) => (response += d.toString('latin1')));
      socket.on('close', () => (closed = true));
      socket.on('error', () => {});
      socket.write(
        `POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer fgk_nope\r\nContent-Type: application/json\r\n${framing}\r\n\r\n`,
      );
      const chunked = framing.startsWith('Transfer');
      const piece = Buffer.alloc(64 * 1024, 0x20);
      const chunk = chunked ? Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')]) : piece;
      let sent = 0;
      // Far beyond MAX_BODY_BYTES (64 KiB) and the socket buffers: a server that keeps reading takes all of it.
      while (!closed && sent < 256 * 1024 * 1024) {
        // A write into a socket the server has closed fails (EPIPE, ECONNRESET): that is the point.
        if (!socket.write(chunk)) await Promise.race([once(socket, 'drain'), once(socket, 'close')]).catch(() => {});
        sent += chunk.length;
      }
      if (!closed) await Promise.race([once(socket, 'close'), new Promise((r) => setTimeout(r, 2000))]);
      socket.destroy();
      assert.ok(closed, `${framing}: the server closed the connection (sent ${sent} bytes)`);
      assert.ok(sent < 256 * 1024 * 1024, `${framing}: stopped reading long before the whole body`);
      assert.match(response, /^HTTP\/1\.1 (401|429) /, framing);
      assert.match(response, /\r\nConnection: close\r\n/i, framing);
    }
  });
});

describe('the cache of verified keys under a flood of unknown ones', () => {
  // No per-address budget here: the flood has to reach the cache; no shedding either, it would refuse the last request.
  const live = liveApi({ AUTH_CACHE_TTL_MS: '3600000', AUTH_FAILURE_BURST: '0', SHED_MODE: 'off' });

  it('keeps a verified key cached through 10,500 unknown ones', async () => {
    const { env, api } = live;
    const warm = await api.post({ type: 'warm' });
    assert.equal(warm.status, 202);
    await warm.arrayBuffer();
    // Changed behind the cache's back: a key looked up again would now write for tenant "moved".
    await env.pool.query("UPDATE api_keys SET tenant = 'moved' WHERE tenant = 'acme'");
    const flood = await autocannon({
      url: `${api.url}/v1/events`,
      connections: 16,
      amount: 10_500,
      requests: [
        {
          // No body: the connection stays open between refusals, so the flood is as fast as the server allows.
          method: 'POST',
          setupRequest: (req) => ({ ...req, headers: { ...req.headers, authorization: `Bearer fgk_${randomBytes(16).toString('hex')}` } }),
        },
      ],
    });
    assert.equal(flood['2xx'], 0);
    assert.ok(
      counter(await api.metrics(), 'floodgate_auth_key_lookups_total', 'result="unknown"') > 10_000,
      'over 10,000 unknown keys looked up',
    );
    const after = await api.post({ type: 'after.flood' });
    assert.equal(after.status, 202);
    await after.arrayBuffer();
    const entries = await env.redis.xrange(env.config.streamKey, '-', '+');
    assert.equal(entries.length, 2);
    assert.equal(decodeEntry(entries[1]![1][1]!).tenant, 'acme', 'served from the cache, not looked up again');
    assert.equal(counter(await api.metrics(), 'floodgate_auth_key_lookups_total', 'result="valid"'), 1);
  });
});
