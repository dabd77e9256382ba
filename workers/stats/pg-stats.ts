import type { Registry } from 'prom-client';
import { withTransaction, type Pool, type PoolClient } from '../../lib/db.js';
import type { Logger } from '../../lib/logger.js';
import { activitySection } from './pg/activity.js';
import { bgwriterSection } from './pg/bgwriter.js';
import { databaseSection } from './pg/database.js';
import { locksSection } from './pg/locks.js';
import { partitionsSection } from './pg/partitions.js';
import { COLLECTOR_APPLICATION_NAME, type PgSectionContext } from './pg/section.js';
import { sizesSection } from './pg/sizes.js';
import { statementsSection } from './pg/statements.js';
import { tablesSection } from './pg/tables.js';
import { walSection } from './pg/wal.js';
import { createStatsScrape } from './stats-scrape.js';

export { shortQueryText } from './pg/statements.js';
export { COLLECTOR_APPLICATION_NAME };

/** Options of registerPgStats. */
export interface PgStatsOptions {
  readonly registry: Registry;
  readonly pool: Pool;
  /** Whole-scrape budget; each statement gets 80% of it as its server-side statement_timeout. */
  readonly timeoutMs?: number;
  /** pg_stat_statements entries exposed, by total execution time. */
  readonly topStatements?: number;
  /** Told when a section starts failing and when it recovers (not on every failed scrape). */
  readonly logger?: Logger;
}

/**
 * Registers the Postgres collectors in `registry`, one section per file under pg/. Everything is queried at scrape
 * time, in parallel on `pool`, under a per-statement statement_timeout and a whole-scrape timeout, so a down or
 * hung database shows as `floodgate_pg_up 0` (and absent figures) instead of a hung or failed scrape.
 */
export function registerPgStats(options: PgStatsOptions): void {
  const { registry, pool, timeoutMs = 2000, topStatements = 10, logger } = options;
  // Server-side cancellation comes before the scrape gives up, so one blocked statement (a lock) loses only
  // its own section; the remaining fifth covers connecting and the round trips around it.
  const statementTimeoutMs = Math.max(1, Math.floor(timeoutMs * 0.8));
  const scrape = createStatsScrape({
    registry,
    timeoutMs,
    logger,
    self: {
      up: { name: 'floodgate_pg_up', help: 'Whether the last scrape got any answer from Postgres within the timeout (1) or not (0).' },
      duration: { name: 'floodgate_pg_scrape_duration_seconds', help: 'Time the last Postgres stats scrape took.' },
      errors: {
        name: 'floodgate_pg_scrape_errors_total',
        help: 'Postgres stats sections that failed or timed out, by collector section.',
        labelNames: ['collector'],
      },
    },
  });

  const context: PgSectionContext = {
    scrape,
    timed: <T>(fn: (client: PoolClient) => Promise<T>): Promise<T> =>
      withTransaction(pool, async (client) => {
        // set_config(..., true) is SET LOCAL: the pooled connection goes back to the flusher without either.
        await client.query("SELECT set_config('statement_timeout', $1, true), set_config('application_name', $2, true)", [
          String(statementTimeoutMs),
          COLLECTOR_APPLICATION_NAME,
        ]);
        return fn(client);
      }),
  };

  // Sections queue for the pool's connections in this order: the cheap views that never wait for a table lock come
  // first, so a slow or blocked section at the end (sizes opens every partition) cannot make them late.
  activitySection(context);
  databaseSection(context);
  partitionsSection(context);
  locksSection(context);
  bgwriterSection(context);
  walSection(context);
  tablesSection(context);
  sizesSection(context);
  statementsSection(context, topStatements);
}
