import type { Config } from '../lib/config.js';
import { createPool, type Pool } from '../lib/db.js';
import { SQLSTATE } from '../lib/errors.js';

/**
 * Runs an administrative command on a one-connection pool and always closes it; a missing table means the
 * database was never migrated, which is said in those words rather than as a raw SQL error.
 */
export async function withCommandPool(
  config: Config,
  applicationName: string,
  table: string,
  run: (pool: Pool) => Promise<void>,
): Promise<void> {
  const pool = createPool(config.databaseUrl, { max: 1, applicationName });
  try {
    await run(pool);
  } catch (err) {
    if ((err as { code?: string }).code === SQLSTATE.undefinedTable) {
      throw new Error(`the ${table} table does not exist yet: run \`floodgate migrate\` first`, { cause: err });
    }
    throw err;
  } finally {
    await pool.end();
  }
}
