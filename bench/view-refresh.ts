// The alternative to maintained hour and day tables: materialized views over rollup_minute, refreshed
// CONCURRENTLY, timed over a full retention of minute rows.
import type { Pool } from '../lib/db.js';
import { TRUNCATE, median } from './rollup-variants.js';

/** REFRESH MATERIALIZED VIEW CONCURRENTLY of hour and day views over a rollup_minute holding a full retention. */
export interface RefreshFigures {
  readonly minuteRows: number;
  readonly hourRefreshMs: number;
  readonly dayRefreshMs: number;
}

/** Fills rollup_minute with `tenants` × `types` series over `days` days, then times refreshing hour and day views. */
export async function measureViewRefresh(pool: Pool, options: { tenants: number; types: number; days: number }): Promise<RefreshFigures> {
  const { tenants, types, days } = options;
  await pool.query(TRUNCATE);
  await pool.query('SELECT floodgate_create_partitions(current_date - $1::int, current_date)', [days]);
  await pool.query(
    `INSERT INTO rollup_minute
     SELECT 'tenant-' || t, 'type-' || k, m, 10, 5, 50, 1, 20
     FROM generate_series(1, $1::int) t, generate_series(1, $2::int) k,
          generate_series(date_bin('1 minute', now() - make_interval(days => $3::int), 'epoch'), now(), interval '1 minute') m`,
    [tenants, types, days - 1],
  );
  const { rows } = await pool.query<{ n: string }>('SELECT count(*) AS n FROM rollup_minute');
  await pool.query(`
    DROP MATERIALIZED VIEW IF EXISTS bench_mv_day; DROP MATERIALIZED VIEW IF EXISTS bench_mv_hour;
    CREATE MATERIALIZED VIEW bench_mv_hour AS
      SELECT tenant, date_bin('1 hour', bucket, 'epoch') AS bucket, type, sum(event_count)::bigint AS event_count, sum(value_count)::bigint AS value_count,
             sum(value_sum) AS value_sum, min(value_min) AS value_min, max(value_max) AS value_max
      FROM rollup_minute GROUP BY 1, 2, 3;
    CREATE UNIQUE INDEX ON bench_mv_hour (tenant, bucket, type);
    CREATE MATERIALIZED VIEW bench_mv_day AS
      SELECT tenant, date_bin('1 day', bucket, 'epoch') AS bucket, type, sum(event_count)::bigint AS event_count, sum(value_count)::bigint AS value_count,
             sum(value_sum) AS value_sum, min(value_min) AS value_min, max(value_max) AS value_max
      FROM bench_mv_hour GROUP BY 1, 2, 3;
    CREATE UNIQUE INDEX ON bench_mv_day (tenant, bucket, type);
    ANALYZE rollup_minute;`);
  const hour: number[] = [];
  const day: number[] = [];
  for (let i = 0; i < 3; i++) {
    // What a minute of traffic changes between two refreshes: the newest minute of every series.
    await pool.query("UPDATE rollup_minute SET event_count = event_count + 1 WHERE bucket = date_bin('1 minute', now(), 'epoch')");
    let t = performance.now();
    await pool.query('REFRESH MATERIALIZED VIEW CONCURRENTLY bench_mv_hour');
    hour.push(performance.now() - t);
    t = performance.now();
    await pool.query('REFRESH MATERIALIZED VIEW CONCURRENTLY bench_mv_day');
    day.push(performance.now() - t);
  }
  await pool.query('DROP MATERIALIZED VIEW bench_mv_day; DROP MATERIALIZED VIEW bench_mv_hour');
  await pool.query(TRUNCATE);
  return { minuteRows: Number(rows[0]!.n), hourRefreshMs: Math.round(median(hour)), dayRefreshMs: Math.round(median(day)) };
}
