import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { localShare } from '../app/limits/shared-bucket.js';
import { keyLimit } from '../app/middleware/rate-limit.js';
import { createApiKey, type KeyGrant } from '../lib/api-keys.js';
import { loadConfig } from '../lib/config.js';
import { createTestEnv, eventually, json, startTestApi, type TestApi, type TestEnv } from './support.js';

describe('per-key rate limits (token bucket) on a real listening server', () => {
  let env: TestEnv;
  let api: TestApi;
  before(async () => {
    // A default for keys without their own limit; the test's key `api.key` has none.
    env = await createTestEnv({ RATE_LIMIT_PER_SECOND: '1', RATE_LIMIT_BURST: '2' });
    api = await startTestApi(env);
  });
  after(async () => {
    await api?.close();
    await env?.cleanup();
  });

  async function post(key: string): Promise<Response> {
    return fetch(`${api.url}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ type: 'metered.call' }),
    });
  }

  async function statuses(key: string, n: number): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const res = await post(key);
      await res.arrayBuffer();
      out.push(res.status);
    }
    return out;
  }

  it("answers 429 rate_limited with Retry-After once a key's burst is spent, leaves other keys alone, and refills", async () => {
    const { key: metered } = await createApiKey(env.pool, { tenant: 'metered', rateLimit: { perSecond: 2, burst: 3 } });
    assert.deepEqual(await statuses(metered, 3), [202, 202, 202], 'the burst goes through');
    const limited = await post(metered);
    assert.equal(limited.status, 429);
    assert.equal((await json(limited)).error, 'rate_limited');
    assert.match(limited.headers.get('retry-after') ?? '', /^[1-9]\d*$/, 'whole seconds, at least 1');

    const { key: other } = await createApiKey(env.pool, { tenant: 'metered', rateLimit: { perSecond: 2, burst: 3 } });
    assert.deepEqual(await statuses(other, 3), [202, 202, 202], 'another key of the same tenant has its own bucket');

    await eventually(async () => (await statuses(metered, 1))[0] === 202, 'a token refilled');
  });

  it('applies RATE_LIMIT_PER_SECOND / RATE_LIMIT_BURST to keys without their own limit, and none to a key set to 0', async () => {
    const answers = await statuses(api.key, 3);
    assert.deepEqual(answers.slice(0, 2), [202, 202]);
    assert.equal(answers[2], 429);
    const { key: unlimited } = await createApiKey(env.pool, { tenant: 'firehose', rateLimit: { perSecond: 0 } });
    assert.ok((await statuses(unlimited, 20)).every((s) => s === 202));
  });

  it('refuses before reading the body', async () => {
    const { key } = await createApiKey(env.pool, { tenant: 'tiny', rateLimit: { perSecond: 0.01, burst: 1 } });
    assert.deepEqual(await statuses(key, 1), [202]);
    // An unparseable body would be a 400 if it were read: the 429 comes first.
    const res = await fetch(`${api.url}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: '{"type":',
    });
    assert.equal(res.status, 429);
    const retryAfter = Number(res.headers.get('retry-after'));
    assert.ok(retryAfter > 90 && retryAfter <= 100, `about the 100 s until the next token at 0.01 per second, got ${retryAfter}`);
    await res.arrayBuffer();
  });
});

describe('the share of a rate limit each API process enforces alone (RATE_LIMIT_STORE=local, or Redis unreachable)', () => {
  const grant = (perSecond: number | null, burst: number | null): KeyGrant => ({
    keyId: 1,
    tenant: 'acme',
    defaultPriority: 'normal',
    scopes: ['ingest'],
    maxPriority: 'critical',
    expiresAt: null,
    rateLimit: { perSecond, burst },
  });
  const processLimit = (g: KeyGrant, config: ReturnType<typeof loadConfig>) => {
    const limit = keyLimit(g, config);
    return limit && localShare(limit, config.apiProcesses);
  };

  it('splits rate and burst across API_PROCESSES so a key never exceeds its limit in total', () => {
    const config = loadConfig({ API_PROCESSES: '4', RATE_LIMIT_PER_SECOND: '0' });
    assert.deepEqual(processLimit(grant(100, 200), config), { rate: 25, burst: 50, periodSeconds: 0 });
    assert.deepEqual(processLimit(grant(2, 2), config), { rate: 0.5, burst: 1, periodSeconds: 0 }, 'at least one token per process');
    assert.equal(processLimit(grant(null, null), config), null, 'no default: unlimited');
    assert.equal(
      processLimit(grant(0, 10), loadConfig({ API_PROCESSES: '1', RATE_LIMIT_PER_SECOND: '5' })),
      null,
      '0 exempts a key from the default',
    );
  });

  it('defaults the burst to one second of the rate', () => {
    const config = loadConfig({ API_PROCESSES: '1', RATE_LIMIT_PER_SECOND: '30', RATE_LIMIT_BURST: '0' });
    assert.deepEqual(keyLimit(grant(null, null), config), { rate: 30, burst: 30, periodSeconds: 0 });
    assert.deepEqual(keyLimit(grant(null, 5), config), { rate: 30, burst: 5, periodSeconds: 0 });
  });
});
