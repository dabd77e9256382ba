import type { Config } from '../lib/config.js';
import { createPool } from '../lib/db.js';
import { ensureDatabase, migrate } from '../lib/migrate.js';
import { ensurePartitions } from '../lib/partitions.js';

/** `floodgate migrate`: create the database if missing, apply pending migrations, create partitions. */
export async function migrateCommand(config: Config, print: (line: string) => void = console.log): Promise<void> {
  if (await ensureDatabase(config.databaseUrl)) print(`created database ${new URL(config.databaseUrl).pathname.slice(1)}`);
  const pool = createPool(config.databaseUrl, { max: 2, applicationName: 'floodgate-migrate' });
  try {
    const applied = await migrate(pool);
    print(applied.length > 0 ? `applied migrations ${applied.join(', ')}` : 'migrations up to date');
    const created = await ensurePartitions(pool, config);
    if (created.length > 0) print(`created ${created.length} partitions (${created[0]} … ${created.at(-1)})`);
  } finally {
    await pool.end();
  }
}
