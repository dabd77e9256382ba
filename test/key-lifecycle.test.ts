import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApiKey, findApiKey } from '../lib/api-keys.js';
import { keyInvalidationChannel } from '../lib/key-invalidation.js';
import {
  createTestEnv,
  envVars,
  eventually,
  spawnFloodgate,
  startPrivateRedis,
  startTestApi,
  type PrivateRedis,
  type TestApi,
  type TestEnv,
} from './support.js';

/** The status POST /v1/events answers with this key. */
async function status(api: TestApi, key: string): Promise<number> {
  const res = await api.post({ type: 'lifecycle' }, { authorization: `Bearer ${key}` });
  await res.arrayBuffer();
  return res.status;
}

/** `floodgate keys …` against the env; resolves with its exit code and output. */
async function keys(env: TestEnv, args: string[]) {
  const child = await spawnFloodgate(['keys', ...args], envVars(env));
  return child.exited;
}

/** The key printed as the last line of `keys create` or `keys rotate`. */
const lastLine = (stdout: string) => stdout.trim().split('\n').at(-1)!;

describe('revocation, rotation and expiry across two API processes', () => {
  let env: TestEnv;
  let a: TestApi;
  let b: TestApi;
  before(async () => {
    // Cached for an hour: only an announcement (or an expiry the cache knows) can make a process refuse a key.
    env = await createTestEnv({ AUTH_CACHE_TTL_MS: '3600000' });
    [a, b] = [await startTestApi(env), await startTestApi(env)];
    const channel = keyInvalidationChannel(env.config);
    await eventually(
      async () => Number(((await env.redis.pubsub('NUMSUB', channel)) as [string, number])[1]) >= 2,
      'both processes subscribed',
    );
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await env?.cleanup();
  });

  it('keys revoke: both processes refuse the key within about a second although it is cached', async () => {
    const { key, id } = await createApiKey(env.pool, { tenant: 'revoked' });
    assert.deepEqual([await status(a, key), await status(b, key)], [202, 202]);
    const revoked = await keys(env, ['revoke', String(id)]);
    assert.equal(revoked.code, 0, revoked.stderr);
    const started = Date.now();
    await eventually(
      async () => (await status(a, key)) === 401 && (await status(b, key)) === 401,
      'both processes refuse the revoked key',
      10_000,
    );
    // Reported, not asserted: announcement to refusal.
    console.log(`# revocation seen by both processes after ${Date.now() - started} ms`);
  });

  it('keys rotate: a new secret with the same settings; the old one works through the grace period', async () => {
    const { key: old, prefix } = await createApiKey(env.pool, { tenant: 'rotated', scopes: ['ingest', 'read'], maxPriority: 'normal' });
    assert.equal(await status(a, old), 202);
    const rotated = await keys(env, ['rotate', prefix, '--grace', '24h']);
    assert.equal(rotated.code, 0, rotated.stderr);
    const fresh = lastLine(rotated.stdout);
    assert.notEqual(fresh, old);
    const [oldGrant, newGrant] = [await findApiKey(env.pool, old), await findApiKey(env.pool, fresh)];
    assert.equal(newGrant?.keyId, oldGrant?.keyId, 'the same key');
    assert.deepEqual([newGrant?.tenant, newGrant?.scopes, newGrant?.maxPriority], ['rotated', ['ingest', 'read'], 'normal']);
    const hours = (oldGrant!.expiresAt!.getTime() - Date.now()) / 3_600_000;
    assert.ok(hours > 23.9 && hours <= 24, `the old secret works for 24 h more, got ${hours}`);
    assert.equal(newGrant?.expiresAt, null, 'the new secret does not expire');
    assert.deepEqual([await status(a, old), await status(b, old), await status(a, fresh), await status(b, fresh)], [202, 202, 202, 202]);
    const listed = await keys(env, ['list']);
    assert.match(
      listed.stdout.split('\n').find((l) => l.startsWith(`${newGrant.keyId} `))!,
      new RegExp(`${fresh.slice(0, 12)} .*${oldGrant!.expiresAt!.toISOString().slice(0, 16)}`),
    );
  });

  it('keys rotate --grace 0: the old secret is refused at once by both processes, the new one works', async () => {
    const { key: old, id } = await createApiKey(env.pool, { tenant: 'compromised' });
    assert.deepEqual([await status(a, old), await status(b, old)], [202, 202]);
    const rotated = await keys(env, ['rotate', String(id), '--grace', '0']);
    assert.equal(rotated.code, 0, rotated.stderr);
    const fresh = lastLine(rotated.stdout);
    await eventually(
      async () => (await status(a, old)) === 401 && (await status(b, old)) === 401,
      'both processes refuse the old secret',
      10_000,
    );
    assert.deepEqual([await status(a, fresh), await status(b, fresh)], [202, 202]);
  });

  it('refuses the old secret once its grace ends, and a key once it expires, although both are cached', async () => {
    const { key: old, id } = await createApiKey(env.pool, { tenant: 'graced' });
    const rotated = await keys(env, ['rotate', String(id), '--grace', '2s']);
    assert.equal(rotated.code, 0, rotated.stderr);
    const { key: shortLived } = await createApiKey(env.pool, { tenant: 'brief', expiresInMs: 2000 });
    assert.deepEqual([await status(a, old), await status(a, shortLived)], [202, 202]);
    const until = Math.max(
      (await findApiKey(env.pool, old))!.expiresAt!.getTime(),
      (await findApiKey(env.pool, shortLived))!.expiresAt!.getTime(),
    );
    await new Promise((r) => setTimeout(r, until - Date.now() + 50));
    assert.deepEqual([await status(a, old), await status(a, shortLived)], [401, 401]);
    assert.equal(await status(a, lastLine(rotated.stdout)), 202);
  });
});

describe('revocation while Redis is down', () => {
  let redis: PrivateRedis;
  let env: TestEnv;
  let api: TestApi;
  before(async () => {
    redis = await startPrivateRedis();
    env = await createTestEnv({ REDIS_URL: redis.url, AUTH_CACHE_TTL_MS: '3600000', SHED_MODE: 'off' });
    api = await startTestApi(env);
  });
  after(async () => {
    await api?.close();
    await env?.cleanup();
    await redis?.stop();
  });

  it('keys revoke still revokes (and says the announcement failed); the process revalidates and refuses the key', async () => {
    const { key, id } = await createApiKey(env.pool, { tenant: 'offline' });
    assert.equal(await status(api, key), 202);
    await redis.stop();
    const revoked = await keys(env, ['revoke', String(id)]);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.match(revoked.stderr, /could not announce/);
    await eventually(async () => (await status(api, key)) === 401, 'the revoked key refused without the announcement', 10_000);
  });
});
