import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApiKey } from '../lib/api-keys.js';
import { createTestEnv, eventually, startPrivateRedis, startTestApi, type PrivateRedis, type TestApi, type TestEnv } from './support.js';

/** Sends `n` events one after the other with `key` to `api`; returns the statuses. */
async function statuses(api: TestApi, key: string, n: number, headers: Record<string, string> = {}): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const res = await fetch(`${api.url}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, ...headers },
      body: JSON.stringify({ type: 'shared.limit' }),
    });
    await res.arrayBuffer();
    out.push(res.status);
  }
  return out;
}

const accepted = (s: number[]) => s.filter((x) => x === 201 || x === 202).length;

describe('rate limits shared by every API process (RATE_LIMIT_STORE=redis)', () => {
  let env: TestEnv;
  let one: TestApi;
  let two: TestApi;
  before(async () => {
    env = await createTestEnv();
    // Two API processes of one deployment (API_PROCESSES=2), each on its own port, sharing Redis.
    one = await startTestApi(env, { apiProcesses: 2 });
    two = await startTestApi(env, { apiProcesses: 2 });
  });
  after(async () => {
    await one?.close();
    await two?.close();
    await env?.cleanup();
  });

  it("lets one process use a key's whole limit, not its 1/N share", async () => {
    // 10 requests of burst and a refill too slow to matter during the test.
    const { key } = await createApiKey(env.pool, { tenant: 'metered', rateLimit: { perSecond: 0.01, burst: 10 } });
    const answers = await statuses(one, key, 15);
    assert.equal(accepted(answers), 10, JSON.stringify(answers));
    assert.ok(answers.slice(10).every((s) => s === 429));
  });

  it('holds the limit across processes: both together get no more than it', async () => {
    const { key } = await createApiKey(env.pool, { tenant: 'metered', rateLimit: { perSecond: 0.01, burst: 10 } });
    const answers = (await Promise.all([statuses(one, key, 8), statuses(two, key, 8)])).flat();
    assert.equal(accepted(answers), 10, JSON.stringify(answers));
  });
});

describe('rate limits while Redis cannot be asked', () => {
  let redis: PrivateRedis;
  let env: TestEnv;
  let api: TestApi;
  before(async () => {
    redis = await startPrivateRedis();
    env = await createTestEnv({ REDIS_URL: redis.url });
    api = await startTestApi(env, { apiProcesses: 2 });
  });
  after(async () => {
    await api?.close();
    await env?.cleanup();
    await redis?.stop();
  });

  it("fall back to each process's share, and charge what was spent to the shared bucket once Redis is back", async () => {
    const { key } = await createApiKey(env.pool, { tenant: 'metered', rateLimit: { perSecond: 0.01, burst: 10 } });
    await redis.stop();
    // Critical: Redis is down, so they are written to Postgres directly (201); the limit still applies.
    const during = await statuses(api, key, 8, { 'x-priority': 'critical' });
    assert.deepEqual(during, [201, 201, 201, 201, 201, 429, 429, 429], 'this process enforces its half of the burst');
    await redis.restart();
    await eventually(async () => (await statuses(api, api.key, 1))[0] === 202, 'the API writes to Redis again', 15_000);
    // The rest of the shared burst: 10 − the 5 spent during the outage.
    const afterwards = await statuses(api, key, 8);
    assert.deepEqual(afterwards, [202, 202, 202, 202, 202, 429, 429, 429]);
  });
});
