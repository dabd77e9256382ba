// The integrity check: every event the target acknowledged is stored exactly once. Rows of a run are found by
// `data.run` (the run id) within the run's time range (the events primary key starts with occurred_at, so
// the range is an index scan of the day's partitions); events are matched by `data.seq`, unique per event.
import type { Pool } from '../lib/db.js';

/** What the check found. */
export interface IntegrityResult {
  /** Distinct events acknowledged (2xx answers carrying their ids). */
  acknowledged: number;
  /** Rows stored for the run. */
  storedRows: number;
  /** Acknowledged events with no row. */
  missing: number;
  /** Rows beyond the first for one event. */
  duplicated: number;
  /** Events stored that were never acknowledged (answer lost to a timeout, or the run stopped before it came): not an error. */
  unacknowledgedStored: number;
  /** Up to ten missing / duplicated sequence numbers, to look up. */
  missingSample: number[];
  duplicatedSample: number[];
  /** Seconds spent waiting for the worker to write what was acknowledged. */
  drainSeconds: number;
  /** True when nothing is missing or duplicated. */
  ok: boolean;
}

export interface IntegrityOptions {
  readonly runId: string;
  /** The run's start and end; rows are looked for from a minute before to a minute after. */
  readonly from: Date;
  readonly to: Date;
  readonly acknowledged: readonly number[];
  /** How long to wait for acknowledged events to be written before counting; 0 counts at once. */
  readonly drainTimeoutMs?: number;
  /** Stop waiting when the stored count has not moved for this long. */
  readonly settleMs?: number;
}

const SLACK_MS = 60_000;

const COUNT_SQL = `SELECT count(*) AS n FROM events WHERE occurred_at >= $1 AND occurred_at < $2 AND data->>'run' = $3`;

// One full join of stored events against acknowledged ones (a hash or merge join): a NOT EXISTS against a CTE
// can become a nested loop, quadratic in the run's size.
const CHECK_SQL = `
WITH stored AS (
  SELECT (data->>'seq')::bigint AS seq, count(*) AS n
  FROM events
  WHERE occurred_at >= $1 AND occurred_at < $2 AND data->>'run' = $3
  GROUP BY 1
), acked AS (
  SELECT DISTINCT unnest($4::bigint[]) AS seq
), joined AS (
  SELECT s.seq AS stored_seq, s.n, a.seq AS acked_seq FROM stored s FULL JOIN acked a ON a.seq = s.seq
)
SELECT
  coalesce(sum(n), 0) AS stored_rows,
  count(*) FILTER (WHERE stored_seq IS NULL) AS missing,
  coalesce(sum(n - 1) FILTER (WHERE n > 1), 0) AS duplicated,
  count(*) FILTER (WHERE acked_seq IS NULL) AS unacknowledged,
  coalesce((array_agg(acked_seq ORDER BY acked_seq) FILTER (WHERE stored_seq IS NULL))[1:10], '{}') AS missing_sample,
  coalesce((array_agg(stored_seq ORDER BY stored_seq) FILTER (WHERE n > 1))[1:10], '{}') AS duplicated_sample
FROM joined`;

/** Waits (bounded) for the worker to store what was acknowledged, then counts missing and duplicated events. */
export async function checkIntegrity(pool: Pool, options: IntegrityOptions): Promise<IntegrityResult> {
  const from = new Date(options.from.getTime() - SLACK_MS);
  const to = new Date(options.to.getTime() + SLACK_MS);
  const range = [from, to, options.runId];
  const started = Date.now();
  const deadline = started + (options.drainTimeoutMs ?? 60_000);
  const settleMs = options.settleMs ?? 5000;
  let last = -1;
  let lastChange = Date.now();
  for (;;) {
    const { rows } = await pool.query<{ n: string }>(COUNT_SQL, range);
    const n = Number(rows[0]!.n);
    if (n !== last) {
      last = n;
      lastChange = Date.now();
    }
    const outOfTime = Date.now() - lastChange >= settleMs || Date.now() >= deadline;
    // The full comparison once there are enough rows (rows of unacknowledged events can make up the count).
    if (n >= options.acknowledged.length || outOfTime) {
      const result = await compare(pool, range, options.acknowledged, started);
      if (result.missing === 0 || outOfTime) return result;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function compare(pool: Pool, range: unknown[], acknowledged: readonly number[], started: number): Promise<IntegrityResult> {
  const { rows } = await pool.query<{
    stored_rows: string;
    missing: string;
    duplicated: string;
    unacknowledged: string;
    missing_sample: string[];
    duplicated_sample: string[];
  }>(CHECK_SQL, [...range, acknowledged]);
  const r = rows[0]!;
  const missing = Number(r.missing);
  const duplicated = Number(r.duplicated);
  return {
    acknowledged: acknowledged.length,
    storedRows: Number(r.stored_rows),
    missing,
    duplicated,
    unacknowledgedStored: Number(r.unacknowledged),
    missingSample: r.missing_sample.map(Number),
    duplicatedSample: r.duplicated_sample.map(Number),
    drainSeconds: Math.round((Date.now() - started) / 100) / 10,
    ok: missing === 0 && duplicated === 0,
  };
}
