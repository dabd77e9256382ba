import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { SQLSTATE } from './errors.js';
import type { Pool, PoolClient } from './db.js';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../db/migrations/', import.meta.url));
// pg_advisory_lock key shared by every starter, so two `floodgate migrate` at once run one after the other.
const MIGRATION_LOCK_KEY = 7_261_001;

// The package root (the checkout, or dist/ when compiled), for naming migration files in messages.
const PACKAGE_DIR = fileURLToPath(new URL('../', import.meta.url));

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
  /** sha256 of the file with line endings normalised, recorded when applied; see migrationChecksum(). */
  readonly checksum: string;
  /** The file, for messages: relative to the package when it lies inside it. */
  readonly path: string;
}

/** Thrown when an applied migration's file no longer matches what was applied: nothing is migrated then. */
export class EditedMigrationError extends Error {
  override readonly name = 'EditedMigrationError';
  constructor(readonly files: readonly string[]) {
    super(
      `${files.length === 1 ? `migration ${files[0]} was` : `migrations ${files.join(', ')} were`} edited after being applied ` +
        '(its checksum differs from the one recorded in schema_migrations). An applied migration must never change: ' +
        'restore the file as it was (e.g. git checkout it) and put the change in a new numbered migration.',
    );
  }
}

/**
 * The checksum recorded for a migration: sha256 (hex) of its text with CRLF line endings turned into LF, so the
 * same file checked out on Windows is not taken for an edited one.
 */
export function migrationChecksum(sql: string): string {
  return createHash('sha256').update(sql.replace(/\r\n/g, '\n')).digest('hex');
}

/** The numbered `NNN_name.sql` files of a directory, in order. */
export async function readMigrations(dir: string = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d+_[\w-]+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (file) => {
      const full = join(dir, file);
      const sql = await readFile(full, 'utf8');
      const inPackage = relative(PACKAGE_DIR, full);
      const path = inPackage.startsWith('..') ? full : inPackage;
      return { version: Number.parseInt(file, 10), name: file, sql, checksum: migrationChecksum(sql), path };
    }),
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

/**
 * The bookkeeping table, created or brought up to date here rather than by a numbered migration (it must exist
 * before any of them runs). `checksum` came after the first databases: added when missing, and filled in below
 * for migrations applied before it existed.
 */
const BOOTSTRAP = [
  'CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), checksum text)',
  'ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text',
];

/**
 * Checks applied migrations against their files: throws EditedMigrationError naming every edited file; records
 * the checksum of those applied before checksums were kept. A recorded version with no file (a newer database
 * than this build) is left alone.
 */
async function verifyApplied(client: PoolClient, all: readonly Migration[]): Promise<Set<number>> {
  const { rows } = await client.query<{ version: number; checksum: string | null }>(
    'SELECT version, checksum FROM schema_migrations ORDER BY version',
  );
  const files = new Map(all.map((m) => [m.version, m]));
  const edited: string[] = [];
  for (const row of rows) {
    const file = files.get(row.version);
    if (!file) continue;
    if (row.checksum === null) {
      await client.query('UPDATE schema_migrations SET checksum = $2 WHERE version = $1 AND checksum IS NULL', [
        row.version,
        file.checksum,
      ]);
    } else if (row.checksum !== file.checksum) {
      edited.push(file.path);
    }
  }
  if (edited.length > 0) throw new EditedMigrationError(edited);
  return new Set(rows.map((r) => r.version));
}

/**
 * Applies the migrations not yet recorded, each in its own transaction, under an advisory lock. First checks that
 * no applied migration was edited since (EditedMigrationError, and nothing is applied).
 */
export async function migrate(pool: Pool, migrations?: readonly Migration[]): Promise<number[]> {
  const all = migrations ?? (await readMigrations());
  const client = await pool.connect();
  const applied: number[] = [];
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    for (const statement of BOOTSTRAP) await client.query(statement);
    const done = await verifyApplied(client, all);
    for (const m of all) {
      if (done.has(m.version)) continue;
      await client.query('BEGIN');
      try {
        await client.query(m.sql);
        await client.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [m.version, m.name, m.checksum]);
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
