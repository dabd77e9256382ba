import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createApiKey, findApiKey } from '../lib/api-keys.js';
import { createPool } from '../lib/db.js';
import { migrate, readMigrations } from '../lib/migrate.js';
import { createTestEnv, json, startTestApi, TEST_PG_ADMIN_URL, type TestApi, type TestEnv } from './support.js';

describe('key scopes', () => {
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

  const post = (key: string) =>
    fetch(`${api.url}/v1/events`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': key }, body: '{"type":"a"}' });
  const load = (key: string) => fetch(`${api.url}/v1/admin/load`, { headers: { authorization: `Bearer ${key}` } });

  it('answers 403 forbidden to a key without the ingest scope on POST /v1/events', async () => {
    const { key } = await createApiKey(env.pool, { tenant: 'acme', scopes: ['read'] });
    const res = await post(key);
    assert.equal(res.status, 403);
    const body = await json(res);
    assert.equal(body.error, 'forbidden');
    assert.match(body.message, /"ingest" scope/);
    assert.equal(await env.redis.xlen(env.config.streamKey), 0, 'nothing was queued');
  });

  it('answers 403 forbidden on /v1/admin/* to a key without the admin scope, 200 to one with it', async () => {
    const ingestOnly = await load(api.key);
    assert.equal(ingestOnly.status, 403);
    assert.equal((await json(ingestOnly)).error, 'forbidden');
    const { key: adminOnly } = await createApiKey(env.pool, { tenant: 'ops', scopes: ['admin'] });
    assert.equal((await load(adminOnly)).status, 200);
    const cannotIngest = await post(adminOnly);
    assert.equal(cannotIngest.status, 403, 'the admin scope alone does not ingest');
    await cannotIngest.arrayBuffer();
  });
});

describe('migration 004: scopes of the keys made before it', () => {
  it('gives every key ingest, and admin keys admin too', async () => {
    const name = `floodgate_test_scopes_${process.pid}_${Date.now()}`;
    const admin = new pg.Client({ connectionString: TEST_PG_ADMIN_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    const pool = createPool(Object.assign(new URL(TEST_PG_ADMIN_URL), { pathname: `/${name}` }).href, { max: 2, applicationName: 'floodgate-test' });
    try {
      const all = await readMigrations();
      await migrate(pool, all.filter((m) => m.version < 4));
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
