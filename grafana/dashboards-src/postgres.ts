/** The "Floodgate / Postgres" dashboard (grafana/dashboards/postgres.json). */
import { GREEN, ORANGE, RED, q, steps, type DashboardSpec } from '../builder.js';

export const dashboard: DashboardSpec = {
  file: 'postgres.json',
  uid: 'floodgate-postgres',
  title: 'Floodgate / Postgres',
  description:
    "Postgres as the flush worker's pg_stat collector sees it: reachability, connections, partitions, I/O and the costliest statements.",
  rows: [
    {
      title: 'Health',
      panels: [
        {
          title: 'Postgres reachable',
          kind: 'stat',
          width: 6,
          height: 5,
          unit: 'none',
          queries: [q('min(floodgate_pg_up)', 'up')],
          valueTexts: [
            { value: 0, text: 'DOWN', color: RED },
            { value: 1, text: 'up', color: GREEN },
          ],
          description:
            "The worker's probe query succeeded on its last scrape. No value at all means no worker is scraped (FloodgatePostgresDown fires either way).",
        },
        {
          title: 'Connections used',
          kind: 'stat',
          width: 6,
          height: 5,
          unit: 'percentunit',
          queries: [q('max(floodgate_pg_server_connections) / max(floodgate_pg_max_connections)', 'of max_connections')],
          thresholds: steps(0.8, 0.6),
          description:
            'Client connections to the whole server (every database and state: what max_connections limits) as a share of max_connections. ' +
            'Red from 80 %: FloodgatePostgresConnectionsSaturated fires after 5 minutes.',
        },
        {
          title: "Tomorrow's partition",
          kind: 'stat',
          width: 6,
          height: 5,
          unit: 'none',
          queries: [q('min(floodgate_pg_partition_tomorrow_present)', 'tomorrow')],
          valueTexts: [
            { value: 0, text: 'MISSING', color: RED },
            { value: 1, text: 'present', color: GREEN },
          ],
          description:
            'Whether the events partition for tomorrow (UTC) exists. MISSING means the maintenance loop is failing; at midnight flushes would fail.',
        },
        {
          title: 'Oldest transaction',
          kind: 'stat',
          width: 6,
          height: 5,
          unit: 's',
          queries: [q('max(floodgate_pg_oldest_transaction_age_seconds)', 'oldest')],
          thresholds: steps(300, 60),
          description:
            'Age of the longest-open transaction. Minutes-long transactions hold back vacuum (dead tuples pile up) and may hold locks the worker waits on.',
        },
      ],
    },
    {
      title: 'Connections and cache',
      panels: [
        {
          title: 'Connections by state',
          unit: 'short',
          min: 0,
          stack: true,
          // Every worker's collector reports the same database: take one report per state, not their sum.
          queries: [q('max by (state) (sum by (instance, state) (floodgate_pg_connections))', '{{state}}')],
          description:
            "Client connections to Floodgate's database by state from pg_stat_activity, stacked (the collector's own left out). " +
            'Many "idle in transaction" means a client leaks transactions. All at 0 is an idle system: the pools close connections unused for 30 s.',
        },
        {
          title: 'Connections vs max_connections',
          unit: 'short',
          min: 0,
          queries: [
            q('max(floodgate_pg_server_connections)', 'server (all databases)'),
            q('max(sum by (instance) (floodgate_pg_connections))', "Floodgate's database"),
            q('max(floodgate_pg_max_connections)', 'max_connections'),
          ],
          description:
            'Connections against the server limit, which counts every database. Each API process and worker may open DB_POOL_SIZE connections; ' +
            "a server line far above Floodgate's database means other clients share the server.",
        },
        {
          title: 'Oldest transaction age',
          unit: 's',
          min: 0,
          queries: [q('max(floodgate_pg_oldest_transaction_age_seconds)', 'oldest open transaction')],
          thresholds: steps(300),
          description:
            'A sawtooth under a few seconds is the worker committing batches. A line climbing for minutes is a stuck or forgotten transaction: find it in pg_stat_activity.',
        },
        {
          title: 'Cache hit ratio',
          unit: 'percentunit',
          max: 1,
          queries: [q('min(floodgate_pg_cache_hit_ratio)', 'buffer cache hits')],
          thresholds: [
            { value: null, color: RED },
            { value: 0.9, color: ORANGE },
            { value: 0.99, color: GREEN },
          ],
          description:
            'Share of block reads served from shared buffers. An ingest workload is mostly writes, so a drop here usually means reads from someone else (ad-hoc queries, exports).',
        },
      ],
    },
    {
      title: 'Partitions',
      panels: [
        {
          title: 'Inserts per partition',
          unit: 'ops',
          min: 0,
          stack: true,
          queries: [q('partition:floodgate_pg_partition_inserts:rate1m', '{{partition}}')],
          description:
            "Rows inserted per second into each day's partition. Normally almost everything lands in today's; inserts into yesterday's are late events (timestamps in the past).",
        },
        {
          title: 'Dead tuples per partition',
          unit: 'short',
          min: 0,
          queries: [q('floodgate_pg_partition_dead_tuples', '{{partition}}')],
          description:
            'Dead row versions waiting for vacuum. Ingest is insert-only, so these come from rolled-back batches (failed flushes) and deletes; steady growth means vacuum is held back by an old transaction.',
        },
        {
          title: 'Database and partition sizes',
          width: 24,
          unit: 'bytes',
          min: 0,
          queries: [q('max(floodgate_pg_database_size_bytes)', 'database'), q('floodgate_pg_partition_size_bytes', '{{partition}}')],
          description:
            'On-disk size of the database and of each events partition (with indexes). Each day should be about the same size at the same traffic; partitions past RETENTION_DAYS are dropped.',
        },
      ],
    },
    {
      title: 'Writes to disk',
      panels: [
        {
          title: 'Checkpoints',
          unit: 'ops',
          min: 0,
          queries: [q('kind:floodgate_pg_checkpoints:rate5m * 300', '{{kind}} per 5m')],
          description:
            'Checkpoints per 5 minutes by kind. Requested checkpoints (forced because max_wal_size filled) under heavy ingest mean max_wal_size is too small: each causes an I/O burst and slower flushes.',
        },
        {
          title: 'WAL written',
          unit: 'Bps',
          min: 0,
          queries: [q('floodgate:pg_wal_bytes:rate1m', 'WAL bytes/s')],
          description: 'Write-ahead log bytes per second, proportional to rows written (plus full-page images right after checkpoints).',
        },
      ],
    },
    {
      title: 'Statements (pg_stat_statements)',
      panels: [
        {
          title: 'Top statements by total time',
          unit: 'percentunit',
          min: 0,
          queries: [q('topk(10, query:floodgate_pg_statement_time_seconds:rate5m)', '{{query}}')],
          noValue:
            'No data: pg_stat_statements is not installed in this database or not in shared_preload_libraries (floodgate_pg_stat_statements_available = 0)',
          description:
            "Execution seconds per second of the costliest statements (1 = one backend busy all the time). The worker's COPY and INSERT … ON CONFLICT should dominate; anything else at the top is competing load.",
        },
        {
          title: 'Top statements by calls',
          unit: 'ops',
          min: 0,
          queries: [q('topk(10, query:floodgate_pg_statement_calls:rate5m)', '{{query}}')],
          noValue:
            'No data: pg_stat_statements is not installed in this database or not in shared_preload_libraries (floodgate_pg_stat_statements_available = 0)',
          description:
            'Calls per second of the most frequent statements. A statement called per event rather than per batch shows up here first.',
        },
      ],
    },
  ],
};
