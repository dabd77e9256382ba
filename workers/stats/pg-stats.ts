import type { Registry } from 'prom-client';
import { quoteIdent, withTransaction, type Pool, type PoolClient } from '../../lib/db.js';
import { SQLSTATE } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import { DAY_MS, PARTITION_PREFIX, partitionName } from '../../lib/partitions.js';
import { createStatsScrape, num } from './stats-scrape.js';

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

/** Tables outside the partitioned `events` table whose vacuum health matters (pruned by DELETE). */
const WATCHED_TABLES = ['idempotency_keys'];

/** Table-level lock modes, always exposed (as 0 when unused) so `granted="false"` series exist for alerting. */
const LOCK_MODES = [
  'AccessShareLock',
  'RowShareLock',
  'RowExclusiveLock',
  'ShareUpdateExclusiveLock',
  'ShareLock',
  'ShareRowExclusiveLock',
  'ExclusiveLock',
  'AccessExclusiveLock',
];

const QUERY_LABEL_CHARS = 80;

/**
 * application_name of this collector's transactions (SET LOCAL, so the pooled connection gets its own name back
 * at commit). The activity and lock figures leave these out: a scrape's own sessions, active or idle in
 * transaction between its statements, would otherwise show in every scrape.
 */
const COLLECTOR_APPLICATION_NAME = 'floodgate-pg-stats';

/** Seconds since a vacuum/analyze, or -1 for "never" (pg gives null, and absent would hide the problem). */
const ageOrNever = (value: unknown) => (value === null || value === undefined ? -1 : num(value));

/** pg_stat_statements text as a bounded label: whitespace collapsed, first 80 characters. */
export function shortQueryText(query: string): string {
  return query.replace(/\s+/g, ' ').trim().slice(0, QUERY_LABEL_CHARS);
}

/**
 * Registers the Postgres collectors in `registry`. Everything is queried at scrape time, in parallel on
 * `pool`, under a per-statement statement_timeout and a whole-scrape timeout, so a down or hung database
 * shows as `floodgate_pg_up 0` (and absent figures) instead of a hung or failed scrape.
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

  /** Runs `fn` in a transaction whose statements are cancelled by the server after statementTimeoutMs. */
  const timed = <T>(fn: (client: PoolClient) => Promise<T>): Promise<T> =>
    withTransaction(pool, async (client) => {
      // set_config(..., true) is SET LOCAL: the pooled connection goes back to the flusher without either.
      await client.query("SELECT set_config('statement_timeout', $1, true), set_config('application_name', $2, true)", [
        String(statementTimeoutMs),
        COLLECTOR_APPLICATION_NAME,
      ]);
      return fn(client);
    });

  // pg_stat_database, for this database. Postgres keeps these cumulatively: counters set to its value.
  const transactions = scrape.counter({
    name: 'floodgate_pg_transactions_total',
    help: 'Transactions in this database since the stats reset, by outcome (commit, rollback).',
    labelNames: ['outcome'],
  });
  const tuples = scrape.counter({
    name: 'floodgate_pg_tuples_total',
    help: 'Rows inserted, updated, deleted and fetched in this database (pg_stat_database tup_*), by operation.',
    labelNames: ['operation'],
  });
  const blocksHit = scrape.counter({ name: 'floodgate_pg_blocks_hit_total', help: 'Block reads served from shared buffers (pg_stat_database blks_hit).' });
  const blocksRead = scrape.counter({ name: 'floodgate_pg_blocks_read_total', help: 'Block reads that went to the OS (pg_stat_database blks_read).' });
  const cacheHitRatio = scrape.gauge({
    name: 'floodgate_pg_cache_hit_ratio',
    help: 'blks_hit / (blks_hit + blks_read) since the stats reset; absent while both are 0.',
  });
  const deadlocks = scrape.counter({ name: 'floodgate_pg_deadlocks_total', help: 'Deadlocks detected in this database.' });
  const tempBytes = scrape.counter({ name: 'floodgate_pg_temp_bytes_total', help: 'Bytes written to temporary files by queries in this database.' });
  const tempFiles = scrape.counter({ name: 'floodgate_pg_temp_files_total', help: 'Temporary files created by queries in this database.' });
  const conflicts = scrape.counter({ name: 'floodgate_pg_conflicts_total', help: 'Queries cancelled by recovery conflicts (standbys only).' });
  const databaseSize = scrape.gauge({ name: 'floodgate_pg_database_size_bytes', help: 'Size of this database on disk.' });
  scrape.section('database', [transactions, tuples, blocksHit, blocksRead, cacheHitRatio, deadlocks, tempBytes, tempFiles, conflicts, databaseSize], () =>
    timed(async (client) => {
      const { rows } = await client.query(
        `SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, tup_fetched, blks_hit, blks_read,
                deadlocks, temp_bytes, temp_files, conflicts, pg_database_size(datid) AS size_bytes
           FROM pg_stat_database WHERE datname = current_database()`,
      );
      const r = rows[0] as Record<string, unknown> | undefined;
      if (!r) throw new Error('pg_stat_database has no row for the current database');
      return () => {
        transactions.inc({ outcome: 'commit' }, num(r.xact_commit));
        transactions.inc({ outcome: 'rollback' }, num(r.xact_rollback));
        for (const operation of ['inserted', 'updated', 'deleted', 'fetched']) tuples.inc({ operation }, num(r[`tup_${operation}`]));
        const hit = num(r.blks_hit);
        const read = num(r.blks_read);
        blocksHit.inc(hit);
        blocksRead.inc(read);
        if (hit + read > 0) cacheHitRatio.set(hit / (hit + read));
        deadlocks.inc(num(r.deadlocks));
        tempBytes.inc(num(r.temp_bytes));
        tempFiles.inc(num(r.temp_files));
        conflicts.inc(num(r.conflicts));
        databaseSize.set(num(r.size_bytes));
      };
    }),
  );

  // pg_stat_user_tables: the events partitions (label `partition`) and the other watched tables (label `table`).
  const partitionInserts = scrape.counter({
    name: 'floodgate_pg_partition_inserts_total',
    help: 'Rows inserted into each events partition (pg_stat_user_tables n_tup_ins).',
    labelNames: ['partition'],
  });
  const partitionLive = scrape.gauge({ name: 'floodgate_pg_partition_live_tuples', help: 'Estimated live rows per events partition.', labelNames: ['partition'] });
  const partitionDead = scrape.gauge({ name: 'floodgate_pg_partition_dead_tuples', help: 'Estimated dead rows per events partition.', labelNames: ['partition'] });
  const partitionVacuumAge = scrape.gauge({
    name: 'floodgate_pg_partition_last_autovacuum_age_seconds',
    help: 'Seconds since autovacuum last processed each events partition; -1 if never.',
    labelNames: ['partition'],
  });
  const partitionAnalyzeAge = scrape.gauge({
    name: 'floodgate_pg_partition_last_autoanalyze_age_seconds',
    help: 'Seconds since autoanalyze last processed each events partition; -1 if never.',
    labelNames: ['partition'],
  });
  const tableInserts = scrape.counter({ name: 'floodgate_pg_table_inserts_total', help: 'Rows inserted into each watched table (idempotency_keys).', labelNames: ['table'] });
  const tableLive = scrape.gauge({ name: 'floodgate_pg_table_live_tuples', help: 'Estimated live rows per watched table.', labelNames: ['table'] });
  const tableDead = scrape.gauge({ name: 'floodgate_pg_table_dead_tuples', help: 'Estimated dead rows per watched table.', labelNames: ['table'] });
  const tableVacuumAge = scrape.gauge({
    name: 'floodgate_pg_table_last_autovacuum_age_seconds',
    help: 'Seconds since autovacuum last processed each watched table; -1 if never.',
    labelNames: ['table'],
  });
  const tableAnalyzeAge = scrape.gauge({
    name: 'floodgate_pg_table_last_autoanalyze_age_seconds',
    help: 'Seconds since autoanalyze last processed each watched table; -1 if never.',
    labelNames: ['table'],
  });
  scrape.section(
    'tables',
    [partitionInserts, partitionLive, partitionDead, partitionVacuumAge, partitionAnalyzeAge, tableInserts, tableLive, tableDead, tableVacuumAge, tableAnalyzeAge],
    () =>
      timed(async (client) => {
        // to_regclass and pg_inherits take no lock on the tables, so a held ACCESS EXCLUSIVE lock does not block this.
        const { rows } = await client.query(
          `SELECT s.relname, s.n_tup_ins, s.n_live_tup, s.n_dead_tup,
                  extract(epoch FROM clock_timestamp() - s.last_autovacuum) AS autovacuum_age,
                  extract(epoch FROM clock_timestamp() - s.last_autoanalyze) AS autoanalyze_age,
                  s.relid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = to_regclass('events')) AS is_partition
             FROM pg_stat_user_tables s
            WHERE (s.relname ~ '^${PARTITION_PREFIX}' AND s.relid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = to_regclass('events')))
               OR s.relid IN (SELECT to_regclass(t) FROM unnest($1::text[]) AS t)
            ORDER BY s.relname`,
          [WATCHED_TABLES],
        );
        return () => {
          for (const r of rows as Record<string, unknown>[]) {
            const name = String(r.relname);
            if (r.is_partition) {
              const labels = { partition: name };
              partitionInserts.inc(labels, num(r.n_tup_ins));
              partitionLive.set(labels, num(r.n_live_tup));
              partitionDead.set(labels, num(r.n_dead_tup));
              partitionVacuumAge.set(labels, ageOrNever(r.autovacuum_age));
              partitionAnalyzeAge.set(labels, ageOrNever(r.autoanalyze_age));
            } else {
              const labels = { table: name };
              tableInserts.inc(labels, num(r.n_tup_ins));
              tableLive.set(labels, num(r.n_live_tup));
              tableDead.set(labels, num(r.n_dead_tup));
              tableVacuumAge.set(labels, ageOrNever(r.autovacuum_age));
              tableAnalyzeAge.set(labels, ageOrNever(r.autoanalyze_age));
            }
          }
        };
      }),
  );

  // Partition coverage: catalog only, so it keeps reporting while something holds a lock on `events`.
  const partitionCount = scrape.gauge({ name: 'floodgate_pg_partitions', help: 'Partitions attached to the events table.' });
  const daysAhead = scrape.gauge({
    name: 'floodgate_pg_partition_days_ahead',
    help: 'Consecutive UTC days, starting tomorrow, that already have an events partition.',
  });
  const tomorrowPresent = scrape.gauge({
    name: 'floodgate_pg_partition_tomorrow_present',
    help: "1 if the events partition for tomorrow (UTC) exists, else 0: without it tomorrow's events cannot be stored.",
  });
  scrape.section('partitions', [partitionCount, daysAhead, tomorrowPresent], () =>
    timed(async (client) => {
      const { rows } = await client.query<{ relname: string }>(
        `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass('events')`,
      );
      return () => {
        const names = new Set(rows.map((r) => r.relname));
        // UTC days by this host's clock, as lib/partitions.ts creates them.
        const now = Date.now();
        let ahead = 0;
        while (names.has(partitionName(now + (ahead + 1) * DAY_MS))) ahead++;
        partitionCount.set(names.size);
        daysAhead.set(ahead);
        tomorrowPresent.set(ahead > 0 ? 1 : 0);
      };
    }),
  );

  // Sizes open each partition (AccessShareLock): a separate section, so a lock only blanks these.
  const partitionSize = scrape.gauge({
    name: 'floodgate_pg_partition_size_bytes',
    help: 'Total size of each events partition: table, indexes and TOAST.',
    labelNames: ['partition'],
  });
  const eventsSize = scrape.gauge({ name: 'floodgate_pg_events_size_bytes', help: 'Total size of all events partitions: tables, indexes and TOAST.' });
  scrape.section('sizes', [partitionSize, eventsSize], () =>
    timed(async (client) => {
      const { rows } = await client.query<{ relname: string; bytes: string }>(
        `SELECT c.relname, pg_total_relation_size(c.oid) AS bytes
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = to_regclass('events') AND c.relname ~ '^${PARTITION_PREFIX}'
          ORDER BY c.relname`,
      );
      return () => {
        let total = 0;
        for (const r of rows) {
          partitionSize.set({ partition: r.relname }, num(r.bytes));
          total += num(r.bytes);
        }
        eventsSize.set(total);
      };
    }),
  );

  // pg_stat_activity: client connections of this database; the server-wide count is what max_connections limits.
  const connections = scrape.gauge({
    name: 'floodgate_pg_connections',
    help: "Client connections to this database (this collector's own left out) by state (pg's spelling, 'unknown' if null) and wait_event_type ('none' if not waiting).",
    labelNames: ['state', 'wait_event_type'],
  });
  const serverConnections = scrape.gauge({
    name: 'floodgate_pg_server_connections',
    help: 'Client connections to the whole server, all databases: what max_connections limits.',
  });
  const maxConnections = scrape.gauge({ name: 'floodgate_pg_max_connections', help: 'The server\'s max_connections setting.' });
  const oldestTransaction = scrape.gauge({
    name: 'floodgate_pg_oldest_transaction_age_seconds',
    help: 'Age of the oldest open transaction in this database (0 if none): long ones hold back vacuum.',
  });
  const oldestQuery = scrape.gauge({
    name: 'floodgate_pg_oldest_active_query_age_seconds',
    help: 'Run time so far of the longest-running active query in this database (0 if none).',
  });
  scrape.section('activity', [connections, serverConnections, maxConnections, oldestTransaction, oldestQuery], () =>
    timed(async (client) => {
      const byState = await client.query<{ state: string; wait_event_type: string; n: number }>(
        `SELECT coalesce(state, 'unknown') AS state, coalesce(wait_event_type, 'none') AS wait_event_type, count(*)::int AS n
           FROM pg_stat_activity
          WHERE datname = current_database() AND backend_type = 'client backend' AND application_name IS DISTINCT FROM $1
          GROUP BY 1, 2
          ORDER BY 1, 2`,
        [COLLECTOR_APPLICATION_NAME],
      );
      const totals = await client.query<Record<string, unknown>>(
        `SELECT current_setting('max_connections')::int AS max_connections,
                (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int AS server_connections,
                (SELECT coalesce(extract(epoch FROM max(clock_timestamp() - xact_start)), 0) FROM pg_stat_activity
                  WHERE datname = current_database() AND backend_type = 'client backend'
                    AND application_name IS DISTINCT FROM $1 AND xact_start IS NOT NULL) AS oldest_xact,
                (SELECT coalesce(extract(epoch FROM max(clock_timestamp() - query_start)), 0) FROM pg_stat_activity
                  WHERE datname = current_database() AND backend_type = 'client backend'
                    AND application_name IS DISTINCT FROM $1 AND state = 'active') AS oldest_query`,
        [COLLECTOR_APPLICATION_NAME],
      );
      const t = totals.rows[0] ?? {};
      return () => {
        for (const r of byState.rows) connections.set({ state: r.state, wait_event_type: r.wait_event_type }, r.n);
        serverConnections.set(num(t.server_connections));
        maxConnections.set(num(t.max_connections));
        oldestTransaction.set(Math.max(0, num(t.oldest_xact)));
        oldestQuery.set(Math.max(0, num(t.oldest_query)));
      };
    }),
  );

  // pg_locks held or awaited by backends of this database.
  const locks = scrape.gauge({
    name: 'floodgate_pg_locks',
    help: 'Locks held (granted="true") or awaited (granted="false") by backends of this database (this collector\'s own left out), by mode.',
    labelNames: ['mode', 'granted'],
  });
  scrape.section('locks', [locks], () =>
    timed(async (client) => {
      const { rows } = await client.query<{ mode: string; granted: boolean; n: number }>(
        `SELECT l.mode, l.granted, count(*)::int AS n
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE a.datname = current_database() AND a.application_name IS DISTINCT FROM $1
          GROUP BY 1, 2`,
        [COLLECTOR_APPLICATION_NAME],
      );
      return () => {
        for (const mode of LOCK_MODES) for (const granted of ['true', 'false']) locks.set({ mode, granted }, 0);
        for (const r of rows) locks.set({ mode: r.mode, granted: String(r.granted) }, r.n);
      };
    }),
  );

  // pg_stat_bgwriter (PostgreSQL 15/16 columns; 17 moved the checkpoint ones to pg_stat_checkpointer).
  const checkpoints = scrape.counter({
    name: 'floodgate_pg_checkpoints_total',
    help: 'Checkpoints performed, by kind: timed (checkpoint_timeout) or requested (WAL volume, CHECKPOINT).',
    labelNames: ['kind'],
  });
  const checkpointTime = scrape.counter({
    name: 'floodgate_pg_checkpoint_time_seconds_total',
    help: 'Time checkpoints spent writing files to disk (phase="write") and syncing them (phase="sync").',
    labelNames: ['phase'],
  });
  const buffersWritten = scrape.counter({
    name: 'floodgate_pg_buffers_written_total',
    help: 'Shared buffers written, by writer: checkpointer, bgwriter (background writer) or backend (a query had to write itself).',
    labelNames: ['writer'],
  });
  const maxwrittenClean = scrape.counter({
    name: 'floodgate_pg_bgwriter_maxwritten_clean_total',
    help: 'Times the background writer stopped a cleaning scan for having written too many buffers.',
  });
  const buffersAllocated = scrape.counter({ name: 'floodgate_pg_buffers_allocated_total', help: 'Shared buffers allocated.' });
  scrape.section('bgwriter', [checkpoints, checkpointTime, buffersWritten, maxwrittenClean, buffersAllocated], () =>
    timed(async (client) => {
      const { rows } = await client.query(
        `SELECT checkpoints_timed, checkpoints_req, checkpoint_write_time, checkpoint_sync_time, buffers_checkpoint,
                buffers_clean, maxwritten_clean, buffers_backend, buffers_alloc
           FROM pg_stat_bgwriter`,
      );
      const r = (rows[0] ?? {}) as Record<string, unknown>;
      return () => {
        checkpoints.inc({ kind: 'timed' }, num(r.checkpoints_timed));
        checkpoints.inc({ kind: 'requested' }, num(r.checkpoints_req));
        // Postgres reports these two in milliseconds.
        checkpointTime.inc({ phase: 'write' }, num(r.checkpoint_write_time) / 1000);
        checkpointTime.inc({ phase: 'sync' }, num(r.checkpoint_sync_time) / 1000);
        buffersWritten.inc({ writer: 'checkpointer' }, num(r.buffers_checkpoint));
        buffersWritten.inc({ writer: 'bgwriter' }, num(r.buffers_clean));
        buffersWritten.inc({ writer: 'backend' }, num(r.buffers_backend));
        maxwrittenClean.inc(num(r.maxwritten_clean));
        buffersAllocated.inc(num(r.buffers_alloc));
      };
    }),
  );

  // pg_stat_wal (server-wide).
  const walRecords = scrape.counter({ name: 'floodgate_pg_wal_records_total', help: 'WAL records generated by the server.' });
  const walFpi = scrape.counter({ name: 'floodgate_pg_wal_fpi_total', help: 'WAL full-page images generated by the server.' });
  const walBytes = scrape.counter({ name: 'floodgate_pg_wal_bytes_total', help: 'Bytes of WAL generated by the server.' });
  const walBuffersFull = scrape.counter({
    name: 'floodgate_pg_wal_buffers_full_total',
    help: 'Times WAL data was written to disk because the WAL buffers were full.',
  });
  scrape.section('wal', [walRecords, walFpi, walBytes, walBuffersFull], () =>
    timed(async (client) => {
      const { rows } = await client.query('SELECT wal_records, wal_fpi, wal_bytes, wal_buffers_full FROM pg_stat_wal');
      const r = (rows[0] ?? {}) as Record<string, unknown>;
      return () => {
        walRecords.inc(num(r.wal_records));
        walFpi.inc(num(r.wal_fpi));
        walBytes.inc(num(r.wal_bytes));
        walBuffersFull.inc(num(r.wal_buffers_full));
      };
    }),
  );

  // pg_stat_statements, top N of this database by total execution time; the labels are reset each scrape, so
  // only the current top N exist (bounded cardinality).
  const statementsAvailable = scrape.gauge({
    name: 'floodgate_pg_stat_statements_available',
    help: '1 if pg_stat_statements is installed in this database and loaded (shared_preload_libraries), else 0.',
  });
  const statementCalls = scrape.counter({
    name: 'floodgate_pg_statement_calls_total',
    help: 'Calls of each of the top statements by total execution time (pg_stat_statements), summed over users.',
    labelNames: ['queryid', 'query'],
  });
  const statementTime = scrape.counter({
    name: 'floodgate_pg_statement_time_seconds_total',
    help: 'Total execution time of each of the top statements (pg_stat_statements total_exec_time).',
    labelNames: ['queryid', 'query'],
  });
  const statementRows = scrape.counter({
    name: 'floodgate_pg_statement_rows_total',
    help: 'Rows returned or affected by each of the top statements.',
    labelNames: ['queryid', 'query'],
  });
  scrape.section('statements', [statementsAvailable, statementCalls, statementTime, statementRows], () =>
    timed(async (client) => {
      const ext = await client.query<{ schema: string }>(
        `SELECT n.nspname AS schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements'`,
      );
      const schema = ext.rows[0]?.schema;
      if (schema === undefined) return () => statementsAvailable.set(0);
      // The extension can be created without being preloaded; reading it then fails, which means "unavailable".
      await client.query('SAVEPOINT floodgate_pg_stat_statements');
      let rows: { queryid: string; calls: string; total_ms: number; rows: string; query: string | null }[];
      try {
        ({ rows } = await client.query(
          `SELECT queryid::text AS queryid, sum(calls) AS calls, sum(total_exec_time) AS total_ms, sum(rows) AS rows, min(query) AS query
             FROM ${quoteIdent(schema)}.pg_stat_statements
            WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND queryid IS NOT NULL
            GROUP BY queryid
            ORDER BY sum(total_exec_time) DESC
            LIMIT $1`,
          [topStatements],
        ));
      } catch (err) {
        if ((err as { code?: string }).code !== SQLSTATE.objectNotInPrerequisiteState) throw err;
        await client.query('ROLLBACK TO SAVEPOINT floodgate_pg_stat_statements');
        return () => statementsAvailable.set(0);
      }
      return () => {
        statementsAvailable.set(1);
        for (const r of rows) {
          const labels = { queryid: r.queryid, query: shortQueryText(r.query ?? '') };
          statementCalls.inc(labels, num(r.calls));
          statementTime.inc(labels, num(r.total_ms) / 1000);
          statementRows.inc(labels, num(r.rows));
        }
      };
    }),
  );
}
