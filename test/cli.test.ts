import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { findApiKey } from '../lib/api-keys.js';
import { createTestEnv, envVars, spawnFloodgate, type TestEnv } from './support.js';

describe('floodgate CLI', () => {
  let env: TestEnv;
  before(async () => {
    env = await createTestEnv();
  });
  after(() => env?.cleanup());

  const run = async (args: string[], vars: Record<string, string> = envVars(env)) => (await spawnFloodgate(args, vars)).exited;

  it('lists every configuration problem and exits 1', async () => {
    const result = await run(['migrate'], { ...envVars(env), PORT: 'abc', API_PROCESSES: '0', REDIS_URL: 'http://nope' });
    assert.equal(result.code, 1);
    for (const name of ['PORT', 'API_PROCESSES', 'REDIS_URL']) assert.match(result.stderr, new RegExp(name));
  });

  it('exits 2 with the usage on an unknown command or bad usage', async () => {
    const unknown = await run(['frobnicate']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /usage: floodgate/);
    const noTenant = await run(['keys', 'create']);
    assert.equal(noTenant.code, 2);
    assert.match(noTenant.stderr, /--tenant/);
  });

  it('migrates safely when two starters run at once', async () => {
    const [a, b] = await Promise.all([run(['migrate']), run(['migrate'])]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    const { rows } = await env.pool.query<{ version: number; n: string }>('SELECT version, count(*) AS n FROM schema_migrations GROUP BY version');
    assert.ok(rows.length >= 1);
    assert.ok(rows.every((r) => Number(r.n) === 1));
  });

  it('creates a key printed once as the last line, lists it without the secret, and revokes it', async () => {
    const created = await run(['keys', 'create', '--tenant', 'acme', '--priority', 'critical']);
    assert.equal(created.code, 0, created.stderr);
    const key = created.stdout.trim().split('\n').at(-1)!;
    assert.match(key, /^fgk_[A-Za-z0-9_-]{43}$/);
    const grant = await findApiKey(env.pool, key);
    assert.equal(grant?.tenant, 'acme');
    assert.equal(grant?.defaultPriority, 'critical');

    const listed = await run(['keys', 'list']);
    assert.equal(listed.code, 0);
    assert.match(listed.stdout, /acme/);
    assert.ok(!listed.stdout.includes(key), 'the secret is never listed');

    const revoked = await run(['keys', 'revoke', String(grant!.keyId)]);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.equal(await findApiKey(env.pool, key), null);
  });
});
