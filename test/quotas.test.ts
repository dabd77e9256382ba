import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApiKey } from '../lib/api-keys.js';
import { createTestEnv, envVars, json, spawnFloodgate, startTestApi, type TestApi, type TestEnv } from './support.js';

/** Runs `floodgate tenants …` against the env's database. */
async function tenants(env: TestEnv, args: string[]) {
  const proc = await spawnFloodgate(['tenants', ...args], envVars(env));
  return proc.exited;
}

/** Posts a batch of `n` events with `key`. */
async function batch(api: TestApi, key: string, n: number): Promise<Response> {
  return fetch(`${api.url}/v1/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ events: Array.from({ length: n }, (_, i) => ({ type: 'quota.test', data: { i } })) }),
  });
}

const streamLength = (env: TestEnv) => env.redis.xlen(env.config.streamKey);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('per-tenant quotas on accepted events', () => {
  let env: TestEnv;
  let one: TestApi;
  let two: TestApi;
  before(async () => {
    env = await createTestEnv({ QUOTA_REFRESH_MS: '100' });
    one = await startTestApi(env);
    two = await startTestApi(env);
  });
  after(async () => {
    await one?.close();
    await two?.close();
    await env?.cleanup();
  });

  it('are set, changed, listed and cleared with floodgate tenants, and refuse bad values', async () => {
    const set = await tenants(env, ['set-quota', 'listed', '--events-per-second', '100', '--events-per-day', '50000']);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /^listed\s+100\/s\s+50000\/day\s+1$/m);
    const changed = await tenants(env, ['set-quota', 'listed', '--events-per-second', 'none', '--weight', '2.5']);
    assert.match(changed.stdout, /^listed\s+none\s+50000\/day\s+2\.5$/m, 'an absent option keeps its value, none clears it');
    assert.match((await tenants(env, ['list'])).stdout, /^listed\s+none\s+50000\/day\s+2\.5$/m);
    assert.equal((await tenants(env, ['clear-quota', 'listed'])).code, 0);
    assert.doesNotMatch((await tenants(env, ['list'])).stdout, /^listed/m);
    for (const bad of [
      ['set-quota'],
      ['set-quota', 'acme'],
      ['set-quota', 'acme', '--events-per-day', '1.5'],
      ['set-quota', 'acme', '--events-per-second', '0'],
      ['set-quota', 'bad tenant!', '--weight', '1'],
      ['frob'],
    ]) {
      const result = await tenants(env, bad);
      assert.equal(result.code, 2, `${bad.join(' ')}: ${result.stderr}`);
    }
  });

  it('answer 429 quota_exceeded with Retry-After past the per-second and per-day quotas, across API processes, accepting nothing', async () => {
    assert.equal((await tenants(env, ['set-quota', 'metered', '--events-per-second', '5', '--events-per-day', '12'])).code, 0);
    const { key } = await createApiKey(env.pool, { tenant: 'metered' });
    await sleep(300);

    assert.equal((await batch(one, key, 5)).status, 202, 'a second of quota');
    const before = await streamLength(env);
    const overSecond = await batch(one, key, 1);
    assert.equal(overSecond.status, 429);
    const body = await json(overSecond);
    assert.equal(body.error, 'quota_exceeded');
    assert.match(body.message, /5 events per second/);
    assert.equal(overSecond.headers.get('retry-after'), '1');
    assert.equal(await streamLength(env), before, 'nothing of a refused request is accepted');
    assert.equal((await one.post({ type: 'other.tenant' })).status, 202, 'other tenants are not affected');

    await sleep(1100);
    assert.equal((await batch(two, key, 5)).status, 202, 'the next second, on the other process: 10 of the 12 a day');
    await sleep(1100);
    const overDay = await batch(one, key, 3);
    assert.equal(overDay.status, 429, 'three more would exceed the day');
    assert.match((await json(overDay)).message, /12 events per day/);
    const untilMidnight = 86_400 - Math.floor((Date.now() / 1000) % 86_400);
    assert.ok(
      Math.abs(Number(overDay.headers.get('retry-after')) - untilMidnight) <= 5,
      `retry after the UTC day ends: ${overDay.headers.get('retry-after')} vs ${untilMidnight}`,
    );
    assert.equal((await batch(two, key, 2)).status, 202, 'the last two of the day');
    await sleep(1100);
    const spent = await batch(two, key, 1);
    assert.equal(spent.status, 429);
    assert.match((await json(spent)).message, /per day/);
  });
});
