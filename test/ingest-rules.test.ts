import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import Koa from 'koa';
import { Registry } from 'prom-client';
import { createEarlyShed } from '../app/early-shed.js';
import { createApiMetrics } from '../app/metrics.js';
import { errorHandler } from '../app/middleware/errors.js';
import { requestId, requestIdFrom } from '../app/middleware/request-id.js';
import { parsePriority } from '../app/priority.js';
import { jitteredRetryAfter, tokenRetryAfter } from '../app/retry-after.js';
import type { KeyResolver } from '../app/key-resolver.js';
import { overloadedAnswer, type Shedder } from '../app/shedding/shedder.js';
import type { KeyGrant } from '../lib/api-keys.js';
import { admittedEarly } from '../app/state.js';
import { apiError } from '../lib/errors.js';
import { checkEvent } from '../lib/event-schema.js';
import { createLogger } from '../lib/logger.js';

// The early refusal (before Koa) and the Koa middleware both apply these rules; a request must be read, and
// refused, the same way on either path.
describe('request header rules', () => {
  it('X-Priority names a class whatever its case and surrounding blanks, and nothing else', () => {
    assert.equal(parsePriority('critical'), 'critical');
    assert.equal(parsePriority('  LOW '), 'low');
    assert.equal(parsePriority('Normal'), 'normal');
    for (const other of ['', 'urgent', 'low, low', 'lo w']) assert.equal(parsePriority(other), undefined, other);
  });

  it('X-Request-Id is echoed when well formed, replaced by a fresh UUID otherwise', () => {
    assert.equal(requestIdFrom('req-1.2:3_A'), 'req-1.2:3_A');
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    for (const bad of [undefined, '', 'a b', '"quoted"', 'x'.repeat(129), ['a', 'b']]) assert.match(requestIdFrom(bad), uuid, String(bad));
  });
});

describe('Retry-After policy', () => {
  it('a refusal to come back shortly waits 1 to 5 whole seconds, jittered', () => {
    const seen = new Set([0, 0.19, 0.2, 0.5, 0.79, 0.8, 0.999999].map((r) => jitteredRetryAfter(() => r)));
    assert.deepEqual([...seen].sort(), ['1', '2', '3', '4', '5']);
  });

  it('a rate limit waits until its bucket holds a token again, at least a second', () => {
    assert.equal(tokenRetryAfter(0.5, 0.1), '5');
    assert.equal(tokenRetryAfter(0.99, 1000), '1');
    assert.equal(tokenRetryAfter(-1, 1), '2', 'a bucket in debt waits for the debt too');
  });
});

/** A key cache that knows every key, as one tenant's: the early refusal decides only for cached keys. */
const knownKeys = {
  peek: () =>
    ({
      keyId: 1,
      tenant: 'acme',
      defaultPriority: 'normal',
      scopes: ['ingest'],
      maxPriority: 'critical',
      expiresAt: null,
      rateLimit: { perSecond: null, burst: null },
    }) satisfies KeyGrant,
} as unknown as KeyResolver;

describe('the early refusal', () => {
  const servers: Server[] = [];
  const listen = async (handler: Parameters<typeof createServer>[1]) => {
    const server = createServer(handler);
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/events`;
  };
  let early: string;
  let koa: string;
  before(async () => {
    const refuse = { decideEarly: () => 'controller', refusalDelayMs: () => 0 } as unknown as Shedder;
    const shed = createEarlyShed(refuse, createApiMetrics(new Registry()), knownKeys, () => 0.5);
    early = await listen((req, res) => void shed(req, res));
    const app = new Koa();
    app.use(requestId());
    app.use(errorHandler(createLogger('silent', 'test')));
    app.use(() => {
      const answer = overloadedAnswer('low', () => 0.5);
      throw apiError(answer.code, answer.message, answer.details, answer.headers);
    });
    const handle = app.callback();
    koa = await listen((req, res) => void handle(req, res));
  });
  after(() => {
    for (const server of servers) server.close();
  });

  it('answers exactly as a refusal through Koa: status, headers and body from the error catalogue', async () => {
    const send = (url: string) =>
      fetch(url, { method: 'POST', headers: { 'x-priority': 'low', 'x-request-id': 'same-id', authorization: 'Bearer k' }, body: '{}' });
    const [a, b] = await Promise.all([send(early), send(koa)]);
    assert.equal(a.status, 503);
    assert.equal(a.status, b.status);
    for (const header of ['content-type', 'retry-after', 'x-request-id', 'content-length'])
      assert.equal(a.headers.get(header), b.headers.get(header), header);
    assert.equal(await a.text(), await b.text());
  });
});

describe('request state', () => {
  it('marks a request the early path admitted, so the shedder does not decide it again', () => {
    const admit = { decideEarly: () => null } as unknown as Shedder;
    const shed = createEarlyShed(admit, createApiMetrics(new Registry()), knownKeys);
    const req = {
      method: 'POST',
      url: '/v1/events',
      headers: { 'x-priority': 'normal' },
      rawHeaders: ['X-Priority', 'normal', 'Authorization', 'Bearer k'],
    } as unknown as IncomingMessage;
    assert.equal(shed(req, {} as ServerResponse), false, 'handed on to Koa');
    assert.equal(admittedEarly.has(req), true);
  });

  it('is typed: nothing in app/ casts ctx.state or marks the raw request', async () => {
    const dir = new URL('../app/', import.meta.url);
    const files = (await readdir(dir, { recursive: true })).filter((f) => f.endsWith('.ts'));
    for (const file of files) {
      const text = await readFile(new URL(file, dir), 'utf8');
      assert.doesNotMatch(text, /ctx\.state(\.\w+)*\s+as\s/, `${file} casts ctx.state`);
      assert.doesNotMatch(text, /\(\s*(ctx\.)?req\s+as\s/, `${file} casts the request to mark it`);
    }
  });
});

describe('event timestamps', () => {
  const newYear2017 = Date.parse('2017-01-01T00:00:00Z');
  const check = (timestamp: string) => checkEvent({ type: 'a', timestamp }, newYear2017, { retentionDays: 3650, maxEventDataBytes: 1024 });
  const occurredAt = (timestamp: string) => {
    const result = check(timestamp);
    assert.ok(result.ok, `${timestamp}: ${JSON.stringify(result)}`);
    return result.event.occurredAt;
  };

  it('accepts a leap second, as RFC 3339 allows, and stores it as the following second', () => {
    assert.equal(occurredAt('2016-12-31T23:59:60Z'), newYear2017);
    assert.equal(occurredAt('2016-12-31T23:59:60.250Z'), newYear2017 + 250);
    assert.equal(occurredAt('2016-12-31T18:59:60-05:00'), newYear2017, 'at the end of the UTC day, whatever the offset');
    assert.equal(occurredAt('2016-12-31T23:59:59Z'), newYear2017 - 1000);
  });

  it('refuses a 60th second anywhere but at the end of a UTC day', () => {
    assert.equal(check('2016-12-31T23:58:60Z').ok, false);
    assert.equal(check('2016-12-31T23:59:61Z').ok, false);
  });
});
