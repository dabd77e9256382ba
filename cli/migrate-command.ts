import { CONFIG_VARIABLES, type Config } from '../lib/config.js';
import { createPool, type Pool } from '../lib/db.js';
import { SQLSTATE } from '../lib/errors.js';
import { ensurePostgres } from './local-services.js';
import { ensureDatabase, migrate, readMigrations } from '../lib/migrate.js';
import { ensurePartitions } from '../lib/partitions.js';
import { localDataDir } from './paths.js';

/** Creates the database if missing, applies pending migrations, creates partitions; reports each step through `print`. */
export async function applySchema(config: Config, print: (line: string) => void): Promise<void> {
  const dbName = decodeURIComponent(new URL(config.databaseUrl).pathname.slice(1));
  const created = await ensureDatabase(config.databaseUrl).catch((err: { code?: string }) => {
    // Two starters racing on a fresh server: the loser's CREATE DATABASE fails with unique_violation on
    // pg_database_datname_index (not the duplicate_database ensureDatabase expects) once the winner has
    // committed, so a second look finds the database.
    if (err.code === SQLSTATE.uniqueViolation) return ensureDatabase(config.databaseUrl);
    throw err;
  });
  if (created) print(`created database ${dbName}`);
  const pool = createPool(config.databaseUrl, { max: 1, applicationName: 'floodgate-migrate' });
  try {
    const available = await readMigrations();
    const applied = await migrate(pool, available);
    const names = new Map(available.map((m) => [m.version, m.name]));
    if (applied.length === 0) print(`migrations up to date (latest ${available.at(-1)?.name ?? 'none'})`);
    for (const v of applied) print(`applied migration ${names.get(v) ?? v}`);
    const created = await ensurePartitionsRacing(pool, config);
    print(created.length > 0 ? `created ${created.length} daily partitions (${created[0]} … ${created.at(-1)})` : 'partitions up to date');
  } finally {
    await pool.end();
  }
}

async function ensurePartitionsRacing(pool: Pool, config: Config): Promise<string[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await ensurePartitions(pool, config);
    } catch (err) {
      // floodgate_create_partitions checks, then creates: a concurrent starter can win in between (duplicate_table).
      // What it made is skipped on the next pass, so a retry finishes the job.
      if ((err as { code?: string }).code !== SQLSTATE.duplicateTable || attempt >= 5) throw err;
    }
  }
}

/** Whether a URL setting was left at its default, i.e. the operator expects Floodgate to find (or bring) the server. */
export function isDefaultUrl(config: Config, key: 'databaseUrl' | 'redisUrl'): boolean {
  return config[key] === CONFIG_VARIABLES[key].defaultValue;
}

/** Writes one human line to stderr, keeping stdout for what scripts parse. */
export const sayOnStderr = (line: string) => process.stderr.write(`floodgate: ${line}\n`);

/** `floodgate migrate`: the schema step; on a fresh machine (default URL, nothing answering) against a private PostgreSQL it starts and stops. */
export async function migrateCommand(config: Config): Promise<void> {
  const pg = await ensurePostgres(config.databaseUrl, isDefaultUrl(config, 'databaseUrl'), { dataDir: localDataDir(), say: sayOnStderr });
  if (!pg) return applySchema(config, (line) => console.log(line));
  // An interrupted migration rolls back; the private server must not outlive this command either way.
  const stopOnSignal = () => void pg.stop().finally(() => process.exit(130));
  process.once('SIGINT', stopOnSignal).once('SIGTERM', stopOnSignal);
  try {
    await applySchema(config, (line) => console.log(line));
  } finally {
    await pg.stop();
    sayOnStderr('stopped the private PostgreSQL');
    process.off('SIGINT', stopOnSignal).off('SIGTERM', stopOnSignal);
  }
}
