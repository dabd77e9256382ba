import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { ensurePostgres, ensureRedis, ensureServices, isReachable, stopServices, type LocalService } from '../cli/local-services.js';
import { createRedis } from '../lib/redis.js';
import { freePort, TEST_PG_ADMIN_URL, TEST_REDIS_URL } from './support.js';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Processes whose command line mentions `text` (postgres children carry the data directory in theirs). */
async function processesMentioning(text: string): Promise<string[]> {
  const { stdout } = await promisify(execFile)('ps', ['-eo', 'pid=,args=']);
  return stdout.split('\n').filter((line) => line.includes(text) && !line.includes('ps -eo'));
}

describe('private PostgreSQL and Redis for `floodgate start` and `floodgate migrate`', () => {
  const dirs: string[] = [];
  const started: LocalService[] = [];
  const tempDir = async () => {
    const dir = await mkdtemp(join(tmpdir(), 'floodgate-data-'));
    dirs.push(dir);
    return dir;
  };
  after(async () => {
    await stopServices(started);
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('starts both from the installed binaries when default URLs do not answer, and stopping leaves no process', async () => {
    const dataDir = await tempDir();
    const databaseUrl = `postgres://postgres@127.0.0.1:${await freePort()}/postgres`;
    const redisUrl = `redis://127.0.0.1:${await freePort()}/0`;
    const said: string[] = [];
    const services = await ensureServices(
      { postgres: { url: databaseUrl, isDefault: true }, redis: { url: redisUrl, isDefault: true } },
      { dataDir, say: (l) => said.push(l) },
    );
    started.push(...services);
    assert.equal(services.length, 2);
    assert.equal(said.length, 2, 'it says what it started');
    assert.match(said[0]!, /PostgreSQL/);
    assert.match(said[1]!, /Redis/);

    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    assert.equal((await client.query('SELECT 1 AS one')).rows[0].one, 1);
    const { rows } = await client.query<{ dir: string }>("SELECT current_setting('unix_socket_directories') AS dir");
    assert.ok(rows[0]!.dir.startsWith(dataDir), 'the unix socket lives in the data dir, not /var/run');
    await client.end();
    const redis = createRedis(redisUrl);
    assert.equal(await redis.ping(), 'PONG');
    assert.deepEqual(await redis.config('GET', 'appendonly'), ['appendonly', 'yes']);
    redis.disconnect();

    await stopServices(services);
    for (const s of services) assert.equal(alive(s.pid), false, `${s.name} exited`);
    assert.equal(await isReachable(databaseUrl), false, 'postgres stopped');
    assert.equal(await isReachable(redisUrl), false, 'redis stopped');
    assert.deepEqual(await processesMentioning(dataDir), [], 'no process left behind');
  });

  it('keeps data across a stop and a second start on the same data dir', async () => {
    const dataDir = await tempDir();
    const databaseUrl = `postgres://postgres@127.0.0.1:${await freePort()}/postgres`;
    const first = (await ensurePostgres(databaseUrl, true, { dataDir, say: () => {} }))!;
    started.push(first);
    let client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    await client.query('CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)');
    await client.end();
    await first.stop();

    const second = (await ensurePostgres(databaseUrl, true, { dataDir, say: () => {} }))!;
    started.push(second);
    client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    assert.equal((await client.query('SELECT x FROM kept')).rows[0].x, 42);
    await client.end();
    await second.stop();
    assert.equal(alive(second.pid), false);
  });

  it('starts nothing when something already answers', async () => {
    const dataDir = await tempDir();
    assert.equal(await ensurePostgres(TEST_PG_ADMIN_URL, true, { dataDir, say: () => assert.fail('nothing to say') }), undefined);
    assert.equal(await ensureRedis(TEST_REDIS_URL, true, { dataDir, say: () => assert.fail('nothing to say') }), undefined);
  });

  it('names the URL and what to do when an operator-chosen URL does not answer', async () => {
    const dataDir = await tempDir();
    const databaseUrl = `postgres://postgres@127.0.0.1:${await freePort()}/floodgate`;
    await assert.rejects(ensurePostgres(databaseUrl, false, { dataDir, say: () => {} }), (err: Error) => {
      assert.ok(err.message.includes(databaseUrl), err.message);
      assert.match(err.message, /start PostgreSQL .*or set DATABASE_URL/);
      return true;
    });
    const redisUrl = `redis://127.0.0.1:${await freePort()}/0`;
    await assert.rejects(ensureRedis(redisUrl, false, { dataDir, say: () => {} }), (err: Error) => {
      assert.ok(err.message.includes(redisUrl), err.message);
      assert.match(err.message, /start Redis .*or set REDIS_URL/);
      return true;
    });
  });
});
