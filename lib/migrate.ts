import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { SQLSTATE } from './errors.js';
import type { Pool } from './db.js';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../db/migrations/', import.meta.url));
// pg_advisory_lock key shared by every starter, so two `floodgate migrate` at once run one after the other.
const MIGRATION_LOCK_KEY = 7_261_001;

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/** The numbered `NNN_name.sql` files of a directory, in order. */
export async function readMigrations(dir: string = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d+_[\w-]+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (file) => ({ version: Number.parseInt(file, 10), name: file, sql: await readFile(`${dir}/${file}`, 'utf8') })),
  );
}

/** Creates the database named in the URL when the server is up but the database is not there yet. */
export async function ensureDatabase(databaseUrl: string): Promise<boolean> {
  const probe = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5000 });
  try {
    await probe.connect();
    return false;
  } catch (err) {
    if ((err as { code?: string }).code !== SQLSTATE.invalidCatalogName) throw err;
  } finally {
    await probe.end().catch(() => {});
  }
  const url = new URL(databaseUrl);
  const name = decodeURIComponent(url.pathname.slice(1));
  url.pathname = '/postgres';
  const admin = new pg.Client({ connectionString: url.toString(), connectionTimeoutMillis: 5000 });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
  } catch (err) {
    // Another starter created it between our probe and now: 42P04 duplicate_database, or 23505 when both
    // inserts into pg_database race.
    const code = (err as { code?: string }).code;
    if (code !== '42P04' && code !== SQLSTATE.uniqueViolation) throw err;
  } finally {
    await admin.end();
  }
  return true;
}

/** Applies the migrations not yet recorded, each in its own transaction, under an advisory lock. */
export async function migrate(pool: Pool, migrations?: readonly Migration[]): Promise<number[]> {
  const all = migrations ?? (await readMigrations());
  const client = await pool.connect();
  const applied: number[] = [];
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    await client.query(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
    );
    const { rows } = await client.query<{ version: number }>('SELECT version FROM schema_migrations');
    const done = new Set(rows.map((r) => r.version));
    for (const m of all) {
      if (done.has(m.version)) continue;
      await client.query('BEGIN');
      try {
        await client.query(m.sql);
        await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
        await client.query('COMMIT');
        applied.push(m.version);
      } catch (err) {
        await client.query('ROLLBACK');
        throw new Error(`migration ${m.name} failed: ${(err as Error).message}`, { cause: err });
      }
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => {});
    client.release();
  }
  return applied;
}

/** Whether every migration shipped with this build is applied (for /readyz). */
export async function migrationsApplied(pool: Pool, expectedLatest: number): Promise<boolean> {
  try {
    const { rows } = await pool.query<{ latest: number | null }>('SELECT max(version) AS latest FROM schema_migrations');
    return (rows[0]?.latest ?? 0) >= expectedLatest;
  } catch (err) {
    if ((err as { code?: string }).code === SQLSTATE.undefinedTable) return false;
    throw err;
  }
}
