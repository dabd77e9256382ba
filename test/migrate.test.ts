import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { appendFile, cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import pg from 'pg';
import { createPool, type Pool } from '../lib/db.js';
import { EditedMigrationError, MIGRATIONS_DIR, migrate, readMigrations } from '../lib/migrate.js';
import { TEST_PG_ADMIN_URL } from './support.js';

/** A database of its own per test, unmigrated, and a copy of db/migrations the test may edit. */
describe('migrations are checksummed: an edited applied migration stops migrate', () => {
  const databases: string[] = [];
  let admin: pg.Client;
  let pool: Pool;
  let dir: string;

  before(async () => {
    admin = new pg.Client({ connectionString: TEST_PG_ADMIN_URL });
    await admin.connect();
  });

  beforeEach(async () => {
    await pool?.end();
    const name = `floodgate_test_migrate_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
    await admin.query(`CREATE DATABASE ${name}`);
    databases.push(name);
    pool = createPool(Object.assign(new URL(TEST_PG_ADMIN_URL), { pathname: `/${name}` }).href, {
      max: 2,
      applicationName: 'floodgate-test',
    });
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = await mkdtemp(join(tmpdir(), 'floodgate-migrations-'));
    await cp(MIGRATIONS_DIR, dir, { recursive: true });
  });

  after(async () => {
    await pool?.end();
    for (const name of databases) await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const recorded = async () =>
    (
      await pool.query<{ version: number; name: string; checksum: string | null }>(
        'SELECT version, name, checksum FROM schema_migrations ORDER BY version',
      )
    ).rows;

  it('records the sha256 of each migration file it applies', async () => {
    const applied = await migrate(pool, await readMigrations(dir));
    const files = await readMigrations(dir);
    assert.deepEqual(
      applied,
      files.map((m) => m.version),
    );
    const rows = await recorded();
    assert.equal(rows.length, files.length);
    for (const [i, file] of files.entries()) {
      const sha = createHash('sha256')
        .update(await readFile(join(dir, file.name)))
        .digest('hex');
      assert.deepEqual(rows[i], { version: file.version, name: file.name, checksum: sha });
    }
    assert.deepEqual(await migrate(pool, await readMigrations(dir)), [], 'a second run finds nothing to do and no edit');
  });

  it('refuses, naming the file, when an applied migration was edited, and applies nothing new', async () => {
    await migrate(pool, await readMigrations(dir));
    const [first] = await readMigrations(dir);
    await appendFile(join(dir, first!.name), '\n-- a harmless-looking edit\n');
    await writeFile(join(dir, '900_next.sql'), 'CREATE TABLE next_thing (id int);\n');
    const edited = await readMigrations(dir);
    await assert.rejects(migrate(pool, edited), (err: Error) => {
      assert.ok(err instanceof EditedMigrationError);
      assert.match(err.message, new RegExp(`migration .*${first!.name} was edited after being applied`));
      assert.match(err.message, /put the change in a new numbered migration/);
      return true;
    });
    assert.equal(
      (await recorded()).some((r) => r.version === 900),
      false,
      'the new migration was not applied',
    );
    const exists = await pool.query("SELECT to_regclass('next_thing') AS t");
    assert.equal(exists.rows[0].t, null);
  });

  it('names a file of db/migrations by its path in the package', async () => {
    const shipped = await readMigrations();
    assert.match(shipped[0]!.path, /^db\/migrations\/001_[\w-]+\.sql$/);
    assert.match(new EditedMigrationError([shipped[0]!.path]).message, /^migration db\/migrations\/001_/);
  });

  it('takes a CRLF checkout of the same file for the same migration', async () => {
    await migrate(pool, await readMigrations(dir));
    const [first] = await readMigrations(dir);
    await writeFile(join(dir, first!.name), first!.sql.replace(/\r?\n/g, '\r\n'));
    assert.deepEqual(await migrate(pool, await readMigrations(dir)), []);
  });

  it('upgrades a database migrated before checksums were kept: adds the column and records the current files', async () => {
    const files = await readMigrations(dir);
    const client = await pool.connect();
    try {
      // The bookkeeping as it was: no checksum column; every shipped migration applied.
      await client.query(
        'CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
      );
      for (const m of files) {
        await client.query(m.sql);
        await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
      }
    } finally {
      client.release();
    }
    assert.deepEqual(await migrate(pool, files), []);
    assert.deepEqual(
      (await recorded()).map((r) => r.checksum),
      files.map((m) => m.checksum),
    );
    await appendFile(join(dir, files.at(-1)!.name), '\n-- edited later\n');
    await assert.rejects(migrate(pool, await readMigrations(dir)), EditedMigrationError);
  });
});
