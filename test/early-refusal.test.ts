import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import Koa from 'koa';
import { Registry } from 'prom-client';
import { createEarlyShed } from '../app/early-shed.js';
import { createKeyResolver, type KeyResolver } from '../app/key-resolver.js';
import { createApiMetrics } from '../app/metrics.js';
import { authenticate } from '../app/middleware/auth.js';
import { errorHandler } from '../app/middleware/errors.js';
import { requestId } from '../app/middleware/request-id.js';
import type { Shedder } from '../app/shedding/shedder.js';
import type { State } from '../app/state.js';
import { createApiKey } from '../lib/api-keys.js';
import { createLogger } from '../lib/logger.js';
import { createTestEnv, json, type TestEnv } from './support.js';

/** Marks every answer that went through Koa: an answer without it was given by the early refusal. */
const VIA_KOA = 'x-via-koa';

describe('the early refusal answers what authentication knows from its cache, before Koa', () => {
  let env: TestEnv;
  let keys: KeyResolver;
  let server: Server;
  let url: string;
  before(async () => {
    env = await createTestEnv({ AUTH_FAILURE_BURST: '3', AUTH_FAILURE_RATE_PER_MINUTE: '1' });
    keys = createKeyResolver({ pool: env.pool, config: env.config });
    // The API's two layers over one key cache: the early refusal, then Koa with the real authentication.
    const app = new Koa<State>();
    app.use(async (ctx, next) => {
      ctx.set(VIA_KOA, '1');
      await next();
    });
    app.use(requestId());
    app.use(errorHandler(createLogger('silent', 'test')));
    app.use(authenticate(keys, { scope: 'ingest' }));
    app.use((ctx) => {
      ctx.status = 202;
      ctx.body = '{}';
    });
    const handle = app.callback();
    const admitAll = { decideEarly: () => null } as unknown as Shedder;
    const early = createEarlyShed(admitAll, createApiMetrics(new Registry()), keys);
    server = createServer((req, res) => {
      if (!early(req, res)) void handle(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/events`;
  });
  after(async () => {
    await new Promise((resolve) => server?.close(resolve));
    await env?.cleanup();
  });

  const post = (authorization?: string) =>
    fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'same', ...(authorization ? { authorization } : {}) },
      body: '{}',
    });

  it('refuses a missing key and, once its address has spent its failure budget, unknown keys without Koa; verified keys go on', async () => {
    const { key } = await createApiKey(env.pool, { tenant: 'acme' });
    const verified = await post(`Bearer ${key}`);
    assert.equal(verified.status, 202);
    assert.equal(verified.headers.get(VIA_KOA), '1', 'a key seen for the first time is looked up through Koa');

    const missing = await post();
    assert.equal(missing.status, 401);
    assert.equal(missing.headers.get(VIA_KOA), null, 'no key: answered before Koa');
    assert.equal((await json(missing)).error, 'unauthorized');

    const answers: Array<{ status: number; koa: boolean; body: unknown; headers: Record<string, string | null> }> = [];
    for (let i = 0; i < 6; i++) {
      const res = await post(`Bearer fgk_${randomBytes(32).toString('base64url')}`);
      const headers = Object.fromEntries(
        ['retry-after', 'www-authenticate', 'connection', 'content-type'].map((h) => [h, res.headers.get(h)]),
      );
      answers.push({ status: res.status, koa: res.headers.get(VIA_KOA) === '1', body: await json(res), headers });
    }
    assert.deepEqual(
      answers.map((a) => [a.status, a.koa]),
      [
        [401, true],
        [401, true],
        [401, true],
        [429, false],
        [429, false],
        [429, false],
      ],
      'the budget (3) spent, the rest never reach Koa',
    );
    assert.equal(answers[3]!.headers['retry-after'], '60');
    assert.deepEqual(answers[3]!.body, {
      error: 'too_many_auth_failures',
      message: 'too many failed authentications from this address; retry later',
      request_id: 'same',
    });

    const again = await post(`Bearer ${key}`);
    assert.equal(again.status, 202, 'the verified key from the same address is served');
  });

  it('answers a key known to be invalid as Koa would: same status, headers and body', async () => {
    // A fresh address budget is not needed: a key the cache knows is invalid is refused before the budget matters.
    const bad = `Bearer fgk_${randomBytes(32).toString('base64url')}`;
    const unknownToCache = await createKeyResolver({ pool: env.pool, config: env.config }).resolve(bad.slice(7));
    assert.equal(unknownToCache, null);
    await keys.resolve(bad.slice(7));
    const res = await post(bad);
    assert.equal(res.status, 401);
    assert.equal(res.headers.get(VIA_KOA), null);
    assert.equal(res.headers.get('www-authenticate'), 'Bearer');
    assert.notEqual(res.headers.get('connection'), 'close', 'a small refused body is discarded: the connection stays open');
    assert.deepEqual(await json(res), { error: 'unauthorized', message: 'unknown, revoked or expired API key', request_id: 'same' });
  });
});
