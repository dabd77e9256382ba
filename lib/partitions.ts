import type { Pool } from './db.js';

/** Milliseconds in a day: events are partitioned by UTC day of `occurred_at`. */
export const DAY_MS = 86_400_000;

/** What every daily partition's name starts with; the date follows as YYYYMMDD. */
export const PARTITION_PREFIX = 'events_p';

function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/**
 * The partition holding events of the UTC day of `ms`, e.g. `events_p20261124`. The SQL function
 * floodgate_create_partitions (db/migrations) names them the same way; a test keeps the two in step.
 */
export function partitionName(ms: number): string {
  return PARTITION_PREFIX + utcDay(ms).replace(/-/g, '');
}

export interface PartitionPolicy {
  readonly retentionDays: number;
  readonly partitionsAheadDays: number;
}

/**
 * Creates every daily partition an accepted event can fall in: from the oldest accepted timestamp (one day
 * of slack beyond retention) to `partitionsAheadDays` ahead. Returns the partitions it created.
 */
export async function ensurePartitions(pool: Pool, policy: PartitionPolicy, now: number = Date.now()): Promise<string[]> {
  const from = utcDay(now - (policy.retentionDays + 1) * DAY_MS);
  const to = utcDay(now + policy.partitionsAheadDays * DAY_MS);
  const { rows } = await pool.query<{ name: string }>('SELECT floodgate_create_partitions($1::date, $2::date) AS name', [from, to]);
  return rows.map((r) => r.name);
}

/** Drops partitions wholly older than retention plus one day of slack. Returns the partitions it dropped. */
export async function dropExpiredPartitions(pool: Pool, policy: PartitionPolicy, now: number = Date.now()): Promise<string[]> {
  const before = utcDay(now - (policy.retentionDays + 1) * DAY_MS);
  const { rows } = await pool.query<{ name: string }>('SELECT floodgate_drop_partitions($1::date) AS name', [before]);
  return rows.map((r) => r.name);
}
