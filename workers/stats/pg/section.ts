import type { PoolClient } from '../../../lib/db.js';
import type { StatsScrape } from '../stats-scrape.js';
import { num } from '../stats-scrape.js';

/** What each Postgres section registers its metrics and its query with. */
export interface PgSectionContext {
  readonly scrape: StatsScrape;
  /** Runs `fn` in a transaction whose statements the server cancels after the statement timeout. */
  readonly timed: <T>(fn: (client: PoolClient) => Promise<T>) => Promise<T>;
}

/**
 * application_name of this collector's transactions (SET LOCAL, so the pooled connection gets its own name back
 * at commit) and of the worker's stats pool. The activity and lock figures leave these out: a scrape's own
 * sessions, active or idle in transaction between its statements, would otherwise show in every scrape.
 */
export const COLLECTOR_APPLICATION_NAME = 'floodgate-pg-stats';

/** Seconds since a vacuum/analyze, or -1 for "never" (pg gives null, and absent would hide the problem). */
export const ageOrNever = (value: unknown) => (value === null || value === undefined ? -1 : num(value));
