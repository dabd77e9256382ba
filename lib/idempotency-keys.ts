import type { Pool } from './db.js';

/**
 * How often the worker's maintenance pass runs, pruning expired idempotency keys among other things: a key
 * stays in Postgres (and keeps blocking a new event under it) for up to this long past the dedup window.
 */
export const MAINTENANCE_INTERVAL_MS = 10 * 60_000;

/** How long a claimed key keeps blocking a new event under it, at most: the dedup window plus one maintenance interval. */
export function dedupHorizonMs(dedupWindowHours: number): number {
  return dedupWindowHours * 3_600_000 + MAINTENANCE_INTERVAL_MS;
}

/**
 * The event id Postgres holds under each of `keys` of one tenant. Every stored key counts, however old: until
 * maintenance prunes it, it still keeps a new event under the same key from being stored.
 */
export async function findStoredIds(pool: Pool, tenant: string, keys: readonly string[]): Promise<Map<string, string>> {
  const { rows } = await pool.query<{ key: string; event_id: string }>(
    'SELECT key, event_id FROM idempotency_keys WHERE tenant = $1 AND key = ANY($2::text[])',
    [tenant, keys],
  );
  return new Map(rows.map((r) => [r.key, r.event_id]));
}

/** Forgets idempotency keys older than the dedup window; returns how many were removed. */
export async function pruneIdempotencyKeys(pool: Pool, windowHours: number): Promise<number> {
  const result = await pool.query('DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1)', [windowHours]);
  return result.rowCount ?? 0;
}
