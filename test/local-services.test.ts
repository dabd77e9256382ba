import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { ensureServices, isReachable } from '../lib/local-services.js';
import { createRedis } from '../lib/redis.js';
import { freePort } from './support.js';

describe('private PostgreSQL and Redis for `floodgate start`', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('starts both from the installed binaries when the default URLs do not answer, and stops them', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'floodgate-data-'));
    dirs.push(dataDir);
    const databaseUrl = `postgres://postgres@127.0.0.1:${await freePort()}/postgres`;
    const redisUrl = `redis://127.0.0.1:${await freePort()}/0`;
    const said: string[] = [];
    const services = await ensureServices({ databaseUrl, redisUrl, databaseUrlIsDefault: true, redisUrlIsDefault: true, dataDir, say: (l) => said.push(l) });
    try {
      assert.equal(services.length, 2);
      assert.equal(said.length, 2, 'it says what it started');
      const client = new pg.Client({ connectionString: databaseUrl });
      await client.connect();
      assert.equal((await client.query('SELECT 1 AS one')).rows[0].one, 1);
      await client.end();
      const redis = createRedis(redisUrl);
      assert.equal(await redis.ping(), 'PONG');
      assert.equal(await redis.config('GET', 'appendonly').then((r) => (r as string[])[1]), 'yes');
      redis.disconnect();
    } finally {
      for (const s of services) await s.stop();
    }
    assert.equal(await isReachable(databaseUrl), false, 'postgres stopped');
    assert.equal(await isReachable(redisUrl), false, 'redis stopped');
  });

  it('names the URL and what to do when a chosen URL does not answer', async () => {
    const databaseUrl = `postgres://postgres@127.0.0.1:${await freePort()}/floodgate`;
    await assert.rejects(
      ensureServices({ databaseUrl, redisUrl: 'redis://127.0.0.1:6379/0', databaseUrlIsDefault: false, redisUrlIsDefault: true, dataDir: tmpdir(), say: () => {} }),
      (err: Error) => err.message.includes(databaseUrl) && /set DATABASE_URL/.test(err.message),
    );
  });
});
