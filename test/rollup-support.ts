import assert from 'node:assert/strict';
import type { Pool } from '../lib/db.js';
import { checkEvent } from '../lib/event-schema.js';
import { ROLLUP_LEVELS, writeEntries } from '../lib/pg-batch-write.js';
import { decodeEntry, encodeEntry } from '../lib/stream-entry.js';
import type { TestEnv } from './support.js';

const COLUMNS = 'tenant, type, bucket, event_count, value_count, value_sum, value_min, value_max';

/**
 * Asserts that every rollup level as readers see it (the live views: rollup_minute_live, minute rows plus pending
 * deltas; the coarser levels' coarse rows below the roll-up watermark, minutes above it, stale buckets from
 * minutes, pending deltas) equals the same
 * aggregate computed from `events` right now: same buckets, same counts, sums, minima and maxima (tests use
 * values that add up exactly in floating point).
 */
export async function assertRollupsMatchEvents(pool: Pool, what = 'rollups'): Promise<void> {
  for (const { table: stored, width } of ROLLUP_LEVELS) {
    const table = `${stored}_live`;
    const { rows } = await pool.query<{ side: string; tenant: string; type: string; bucket: Date; event_count: string }>(
      `WITH truth AS (
         SELECT tenant, type, date_bin($1::interval, occurred_at, 'epoch') AS bucket, count(*) AS event_count, count(value) AS value_count,
                coalesce(sum(value), 0) AS value_sum, min(value) AS value_min, max(value) AS value_max
         FROM events GROUP BY 1, 2, 3
       ),
       kept AS (SELECT ${COLUMNS} FROM ${table})
       SELECT 'missing from ${table}' AS side, * FROM (SELECT * FROM truth EXCEPT SELECT * FROM kept) a
       UNION ALL
       SELECT 'not in events' AS side, * FROM (SELECT * FROM kept EXCEPT SELECT * FROM truth) b
       LIMIT 10`,
      [width],
    );
    assert.deepEqual(rows, [], `${what}: ${table} differs from events`);
  }
}

/** Total event_count of rollup_minute_live (minute rows and pending deltas), and rows in events (optionally for one tenant). */
export async function rolledUpAndStored(pool: Pool, tenant?: string): Promise<{ rolledUp: number; stored: number }> {
  const where = tenant ? 'WHERE tenant = $1' : '';
  const { rows } = await pool.query<{ rolled_up: string | null; stored: string }>(
    `SELECT (SELECT sum(event_count) FROM rollup_minute_live ${where}) AS rolled_up, (SELECT count(*) FROM events ${where}) AS stored`,
    tenant ? [tenant] : [],
  );
  return { rolledUp: Number(rows[0]!.rolled_up ?? 0), stored: Number(rows[0]!.stored) };
}

/** Validates `events` as the API would and stores them through the worker's write path; returns their ids. */
export async function writeEvents(env: TestEnv, tenant: string, events: Record<string, unknown>[]): Promise<string[]> {
  const receivedAt = Date.now();
  const valid = events.map((raw) => {
    const check = checkEvent(raw, receivedAt, env.config);
    if (!check.ok) throw new Error(`test event invalid: ${JSON.stringify(check.errors)}`);
    return check.event;
  });
  for (let i = 0; i < valid.length; i += 1000) {
    await writeEntries(env.pool, [decodeEntry(encodeEntry(tenant, 'normal', receivedAt, valid.slice(i, i + 1000)))]);
  }
  return valid.map((e) => e.id);
}
