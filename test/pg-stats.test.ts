import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { Registry } from 'prom-client';
import { createPool } from '../lib/db.js';
import { DAY_MS, partitionName } from '../lib/partitions.js';
import { COLLECTOR_APPLICATION_NAME, registerPgStats } from '../workers/stats/pg-stats.js';
import { metricTypes, parseExposition, select, value } from './exposition.js';
import { createTestEnv, freePort, TEST_PG_ADMIN_URL, type TestEnv } from './support.js';

/** Every family the collector promises, by type; the statement ones only carry samples when pg_stat_statements is usable. */
const FAMILIES: Record<string, 'gauge' | 'counter'> = {
  floodgate_pg_up: 'gauge',
  floodgate_pg_scrape_duration_seconds: 'gauge',
  floodgate_pg_scrape_errors_total: 'counter',
  floodgate_pg_transactions_total: 'counter',
  floodgate_pg_tuples_total: 'counter',
  floodgate_pg_blocks_hit_total: 'counter',
  floodgate_pg_blocks_read_total: 'counter',
  floodgate_pg_cache_hit_ratio: 'gauge',
  floodgate_pg_deadlocks_total: 'counter',
  floodgate_pg_temp_bytes_total: 'counter',
  floodgate_pg_temp_files_total: 'counter',
  floodgate_pg_conflicts_total: 'counter',
  floodgate_pg_database_size_bytes: 'gauge',
  floodgate_pg_partition_inserts_total: 'counter',
  floodgate_pg_partition_live_tuples: 'gauge',
  floodgate_pg_partition_dead_tuples: 'gauge',
  floodgate_pg_partition_last_autovacuum_age_seconds: 'gauge',
  floodgate_pg_partition_last_autoanalyze_age_seconds: 'gauge',
  floodgate_pg_table_inserts_total: 'counter',
  floodgate_pg_table_live_tuples: 'gauge',
  floodgate_pg_table_dead_tuples: 'gauge',
  floodgate_pg_table_last_autovacuum_age_seconds: 'gauge',
  floodgate_pg_table_last_autoanalyze_age_seconds: 'gauge',
  floodgate_pg_partitions: 'gauge',
  floodgate_pg_partition_days_ahead: 'gauge',
  floodgate_pg_partition_tomorrow_present: 'gauge',
  floodgate_pg_partition_size_bytes: 'gauge',
  floodgate_pg_events_size_bytes: 'gauge',
  floodgate_pg_connections: 'gauge',
  floodgate_pg_server_connections: 'gauge',
  floodgate_pg_max_connections: 'gauge',
  floodgate_pg_oldest_transaction_age_seconds: 'gauge',
  floodgate_pg_oldest_active_query_age_seconds: 'gauge',
  floodgate_pg_locks: 'gauge',
  floodgate_pg_checkpoints_total: 'counter',
  floodgate_pg_checkpoint_time_seconds_total: 'counter',
  floodgate_pg_buffers_written_total: 'counter',
  floodgate_pg_bgwriter_maxwritten_clean_total: 'counter',
  floodgate_pg_buffers_allocated_total: 'counter',
  floodgate_pg_wal_records_total: 'counter',
  floodgate_pg_wal_fpi_total: 'counter',
  floodgate_pg_wal_bytes_total: 'counter',
  floodgate_pg_wal_buffers_full_total: 'counter',
  floodgate_pg_stat_statements_available: 'gauge',
  floodgate_pg_statement_calls_total: 'counter',
  floodgate_pg_statement_time_seconds_total: 'counter',
  floodgate_pg_statement_rows_total: 'counter',
};
const STATEMENT_FAMILIES = [
  'floodgate_pg_statement_calls_total',
  'floodgate_pg_statement_time_seconds_total',
  'floodgate_pg_statement_rows_total',
];
/** Families that may rightly have no sample: no section failed, or pg_stat_statements is not usable. */
const MAY_BE_EMPTY = new Set(['floodgate_pg_scrape_errors_total', ...STATEMENT_FAMILIES]);

/** Scrapes the whole registry, timing it. */
async function scrape(registry: Registry) {
  const began = Date.now();
  const text = await registry.metrics();
  return { text, samples: parseExposition(text), ms: Date.now() - began };
}

describe('Postgres stats collector', () => {
  let env: TestEnv;
  const others: pg.Client[] = [];
  before(async () => {
    env = await createTestEnv();
  });
  after(async () => {
    for (const client of others) await client.end().catch(() => {});
    await env?.cleanup();
  });

  /** A connection of its own to the test database, ended in after(). */
  async function connect(databaseUrl = env.databaseUrl): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: databaseUrl, application_name: 'pg-stats-test' });
    others.push(client);
    await client.connect();
    return client;
  }

  it('reports every figure with plausible values after rows are inserted', async () => {
    const writer = await connect();
    const now = Date.now();
    await writer.query(
      `INSERT INTO events (id, tenant, type, occurred_at, received_at, priority)
       SELECT gen_random_uuid(), 'acme', 'test', $1, $1, 'normal' FROM generate_series(1, 25)`,
      [new Date(now)],
    );
    await writer.query(`INSERT INTO idempotency_keys (tenant, key, event_id, created_at) VALUES ('acme', 'k1', gen_random_uuid(), now())`);
    // Backends publish their table counters when idle, at most once a second; this makes the next idle flush it.
    await writer.query('SELECT pg_stat_force_next_flush()');
    // An open transaction that has read `events`: it must show as idle in transaction, holding AccessShareLocks.
    const reader = await connect();
    await reader.query('BEGIN');
    await reader.query('SELECT count(*) FROM events');
    await new Promise((resolve) => setTimeout(resolve, 300));

    const registry = new Registry();
    registerPgStats({ registry, pool: env.pool, timeoutMs: 5000 });
    const { text, samples } = await scrape(registry);
    await reader.query('ROLLBACK');

    const types = metricTypes(text);
    for (const [name, type] of Object.entries(FAMILIES)) {
      assert.equal(types.get(name), type, `${name} is a ${type}`);
      if (!MAY_BE_EMPTY.has(name)) assert.ok(select(samples, name).length > 0, `${name} has a sample`);
    }
    assert.deepEqual(
      [...types.keys()].filter((n) => n.startsWith('floodgate_pg_') && !(n in FAMILIES)),
      [],
      'no family missing from this test (and from the report)',
    );
    assert.deepEqual(select(samples, 'floodgate_pg_scrape_errors_total'), [], 'no section failed');

    assert.equal(value(samples, 'floodgate_pg_up'), 1);
    const today = partitionName(now);
    assert.ok(
      value(samples, 'floodgate_pg_partition_inserts_total', { partition: today }) >= 25,
      "today's partition counts the inserted rows",
    );
    assert.ok(value(samples, 'floodgate_pg_partition_live_tuples', { partition: today }) >= 25);
    assert.ok(value(samples, 'floodgate_pg_tuples_total', { operation: 'inserted' }) >= 25);
    assert.ok(value(samples, 'floodgate_pg_transactions_total', { outcome: 'commit' }) > 0);
    assert.ok(value(samples, 'floodgate_pg_table_inserts_total', { table: 'idempotency_keys' }) >= 1);
    const vacuumAge = value(samples, 'floodgate_pg_partition_last_autovacuum_age_seconds', { partition: today });
    assert.ok(vacuumAge === -1 || vacuumAge >= 0, 'seconds since autovacuum, or -1 for never');

    const ratio = value(samples, 'floodgate_pg_cache_hit_ratio');
    assert.ok(ratio >= 0 && ratio <= 1, `cache hit ratio ${ratio}`);

    assert.equal(value(samples, 'floodgate_pg_partition_tomorrow_present'), 1);
    assert.equal(value(samples, 'floodgate_pg_partition_days_ahead'), env.config.partitionsAheadDays);
    assert.equal(
      value(samples, 'floodgate_pg_partitions'),
      env.config.retentionDays + 2 + env.config.partitionsAheadDays,
      'retention + slack + today + ahead',
    );
    assert.equal(select(samples, 'floodgate_pg_partition_inserts_total', { partition: partitionName(Date.now() + DAY_MS) }).length, 1);

    const todaySize = value(samples, 'floodgate_pg_partition_size_bytes', { partition: today });
    assert.ok(todaySize > 0);
    assert.ok(value(samples, 'floodgate_pg_events_size_bytes') >= todaySize);
    assert.ok(value(samples, 'floodgate_pg_database_size_bytes') > value(samples, 'floodgate_pg_events_size_bytes'));

    const idleInTransaction = select(samples, 'floodgate_pg_connections', { state: 'idle in transaction' });
    assert.ok(idleInTransaction.reduce((n, s) => n + s.value, 0) >= 1, 'the open transaction shows');
    assert.ok(
      select(samples, 'floodgate_pg_connections').every((s) => s.labels.wait_event_type !== ''),
      'wait_event_type is never empty',
    );
    const inDatabase = select(samples, 'floodgate_pg_connections').reduce((n, s) => n + s.value, 0);
    assert.ok(value(samples, 'floodgate_pg_server_connections') >= inDatabase);
    assert.ok(value(samples, 'floodgate_pg_max_connections') >= value(samples, 'floodgate_pg_server_connections'));
    assert.ok(value(samples, 'floodgate_pg_oldest_transaction_age_seconds') >= 0.25, 'the transaction open for 300 ms');
    assert.ok(value(samples, 'floodgate_pg_oldest_active_query_age_seconds') >= 0);
    assert.ok(value(samples, 'floodgate_pg_locks', { mode: 'AccessShareLock', granted: 'true' }) >= 1, "the open transaction's read locks");
    assert.equal(value(samples, 'floodgate_pg_locks', { mode: 'AccessExclusiveLock', granted: 'false' }), 0, 'modes are listed even at 0');

    assert.equal(select(samples, 'floodgate_pg_checkpoints_total').length, 2);
    assert.ok(value(samples, 'floodgate_pg_wal_bytes_total') > 0);
    assert.ok(value(samples, 'floodgate_pg_wal_records_total') > 0);
    assert.equal(value(samples, 'floodgate_pg_stat_statements_available'), 0, 'a fresh database has no pg_stat_statements');
    for (const name of STATEMENT_FAMILIES) assert.deepEqual(select(samples, name), [], `${name}: nothing without the extension`);
  });

  it('reads pg_stat_statements once the extension exists, keeping only the top N statements', async () => {
    await env.pool.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
    const { rows } = await env.pool.query<{ preloaded: boolean }>(
      "SELECT 'pg_stat_statements' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ',')) AS preloaded",
    );
    const registry = new Registry();
    registerPgStats({ registry, pool: env.pool, topStatements: 3 });
    await scrape(registry);
    const { samples } = await scrape(registry);
    assert.deepEqual(select(samples, 'floodgate_pg_scrape_errors_total'), [], 'installed but not preloaded is "unavailable", not an error');
    // Without shared_preload_libraries (the usual local server) the extension exists but cannot be read.
    assert.equal(value(samples, 'floodgate_pg_stat_statements_available'), rows[0]!.preloaded ? 1 : 0);
    if (rows[0]!.preloaded) {
      const calls = select(samples, 'floodgate_pg_statement_calls_total');
      assert.ok(calls.length >= 1 && calls.length <= 3, `${calls.length} statements`);
      for (const s of calls) {
        assert.match(s.labels.queryid ?? '', /^-?\d+$/);
        assert.ok((s.labels.query ?? '').length <= 80 && !/\s{2}|\n/.test(s.labels.query ?? ''), s.labels.query);
      }
    }
  });

  it('shows pg_up 0 within the timeout when the server is not there, or the database does not exist', async () => {
    const port = await freePort();
    for (const url of [`postgres://postgres@127.0.0.1:${port}/floodgate`, `${env.databaseUrl}_missing`]) {
      const pool = createPool(url, { max: 2, applicationName: 'pg-stats-test' });
      try {
        const registry = new Registry();
        registerPgStats({ registry, pool, timeoutMs: 1000 });
        const { samples, ms } = await scrape(registry);
        assert.equal(value(samples, 'floodgate_pg_up'), 0, url);
        assert.ok(ms < 2000, `scrape took ${ms} ms`);
        assert.deepEqual(select(samples, 'floodgate_pg_partition_tomorrow_present'), [], 'no figure without an answer');
        assert.equal(value(samples, 'floodgate_pg_scrape_errors_total', { collector: 'database' }), 1);
      } finally {
        await pool.end();
      }
    }
  });

  it('drops the figures of a database that went away instead of showing stale ones', async () => {
    const pool = createPool(env.databaseUrl, { max: 3, applicationName: 'pg-stats-test' });
    const registry = new Registry();
    registerPgStats({ registry, pool });
    const before = (await scrape(registry)).samples;
    assert.equal(value(before, 'floodgate_pg_up'), 1);
    assert.ok(select(before, 'floodgate_pg_wal_bytes_total').length === 1);
    await pool.end();
    const { samples } = await scrape(registry);
    assert.equal(value(samples, 'floodgate_pg_up'), 0);
    // Unlabelled counters disappear rather than drop to 0, which Prometheus would take for a counter reset.
    for (const name of [
      'floodgate_pg_wal_bytes_total',
      'floodgate_pg_partition_tomorrow_present',
      'floodgate_pg_connections',
      'floodgate_pg_partition_size_bytes',
    ]) {
      assert.deepEqual(select(samples, name), [], `${name} is absent`);
    }
  });

  it('reports every connection state, at 0, on a database nobody but the collector is connected to', async () => {
    // An idle system: every pool has closed its connections. The panels and the saturation alert must read 0, not nothing.
    const name = `floodgate_test_idle_${Date.now().toString(36)}`;
    const admin = await connect(TEST_PG_ADMIN_URL);
    await admin.query(`CREATE DATABASE ${name}`);
    const pool = createPool(Object.assign(new URL(TEST_PG_ADMIN_URL), { pathname: `/${name}` }).href, {
      max: 3,
      applicationName: COLLECTOR_APPLICATION_NAME,
    });
    try {
      const registry = new Registry();
      registerPgStats({ registry, pool });
      const { samples } = await scrape(registry);
      const connections = select(samples, 'floodgate_pg_connections');
      assert.deepEqual(connections.map((c) => c.labels.state).sort(), [
        'active',
        'disabled',
        'fastpath function call',
        'idle',
        'idle in transaction',
        'idle in transaction (aborted)',
      ]);
      assert.ok(connections.every((c) => c.value === 0 && c.labels.wait_event_type === 'none'));
      assert.ok(value(samples, 'floodgate_pg_server_connections') >= 1, 'the server-wide count includes everyone, the collector too');
      assert.ok(value(samples, 'floodgate_pg_max_connections') > 0);
    } finally {
      await pool.end();
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    }
  });

  it('returns within the timeout while a lock blocks a statement, losing only the blocked section', async () => {
    const blocker = await connect();
    await blocker.query('BEGIN');
    await blocker.query('LOCK TABLE events IN ACCESS EXCLUSIVE MODE');
    try {
      const registry = new Registry();
      registerPgStats({ registry, pool: env.pool, timeoutMs: 1000 });
      const { samples, ms } = await scrape(registry);
      assert.ok(ms < 2000, `scrape took ${ms} ms`);
      assert.equal(value(samples, 'floodgate_pg_up'), 1, 'the rest of Postgres answers');
      assert.equal(value(samples, 'floodgate_pg_scrape_errors_total', { collector: 'sizes' }), 1, 'sizes need a lock on each partition');
      assert.deepEqual(select(samples, 'floodgate_pg_partition_size_bytes'), []);
      assert.equal(value(samples, 'floodgate_pg_partition_tomorrow_present'), 1, 'partition coverage needs no lock');
      assert.ok(value(samples, 'floodgate_pg_locks', { mode: 'AccessExclusiveLock', granted: 'true' }) >= 1, 'the blocking lock shows');
    } finally {
      await blocker.query('ROLLBACK');
    }
  });

  it('returns pg_up 0 within the timeout when no connection is free, then recovers without piling up queries', async () => {
    const pool = createPool(env.databaseUrl, { max: 1, applicationName: 'pg-stats-test' });
    try {
      const held = await pool.connect();
      const registry = new Registry();
      registerPgStats({ registry, pool, timeoutMs: 500 });
      const first = await scrape(registry);
      assert.equal(value(first.samples, 'floodgate_pg_up'), 0);
      assert.ok(first.ms < 1500, `scrape took ${first.ms} ms`);
      const waiting = pool.waitingCount;
      assert.ok(waiting > 0);
      // A second scrape while the first's statements still wait joins them rather than queueing more.
      const second = await scrape(registry);
      assert.equal(value(second.samples, 'floodgate_pg_up'), 0);
      assert.equal(pool.waitingCount, waiting, 'no more statements queued for a connection');
      held.release();
      const next = await scrape(registry);
      assert.equal(value(next.samples, 'floodgate_pg_up'), 1);
      assert.equal(value(next.samples, 'floodgate_pg_partition_tomorrow_present'), 1);
    } finally {
      await pool.end();
    }
  });
});
