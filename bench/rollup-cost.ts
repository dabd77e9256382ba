// What the rollups cost the worker: the worker's own write path (writeEntries: COPY into the staging table, then
// the merge statement) with each way of maintaining rollups, rounds interleaved so every variant sees the same
// machine. Also what refreshing hour and day materialized views would cost instead of maintaining them.
import type { Pool } from '../lib/db.js';
import { parseCopyRows } from '../lib/copy-text.js';
import { checkEvent, type ValidEvent } from '../lib/event-schema.js';
import { CREATE_STAGING, INSERT_EVENTS_CTES, MERGE_STAGING, STAGING, copyIntoStaging, rollupCtes, writeEntries } from '../lib/pg-batch-write.js';
import { decodeEntry, encodeEntry, type StreamEntry } from '../lib/stream-entry.js';
import { uuidv7 } from '../lib/uuid7.js';
import { generateEvent, seededRandom } from '../loadtest/events.js';
import { processCpuMicros } from './cpu.js';

const EVENTS_PER_ENTRY = 100;
const ENTRIES_PER_BATCH = 50; // 5000 events: the worker's default FLUSH_BATCH_EVENTS

/** One way of keeping rollups, and how to switch it on and off around its rounds. */
interface Variant {
  readonly name: string;
  readonly merge: string;
  /** Run once in the variant's own database. */
  readonly setup?: string;
  /** Tables of its own, emptied with the product's between scenarios. */
  readonly tables?: string;
  /** The rollup table whose event_count must add up to the rows stored (checked after each round). */
  readonly check?: string;
}

const PLAIN_MERGE = `WITH ${INSERT_EVENTS_CTES} SELECT count(*)::int AS inserted FROM inserted`;

// The alternative to the merge statement: a statement-level trigger reading the transition table (only the rows
// the INSERT … ON CONFLICT DO NOTHING actually inserted), with the same aggregation and upserts.
const TRIGGER_SETUP = `
CREATE OR REPLACE FUNCTION bench_rollup_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  WITH inserted AS (SELECT tenant, type, occurred_at, value FROM new_rows),
  ${rollupCtes()}
  SELECT count(*) INTO n FROM rollup_minute_delta;
  RETURN NULL;
END $$;
CREATE TRIGGER bench_rollup AFTER INSERT ON events REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION bench_rollup_trigger();`;

// The same rollups with `source` as a second dimension, in tables of their own.
const SOURCE_TABLES = `
CREATE TABLE IF NOT EXISTS bench_src_minute (LIKE rollup_minute) PARTITION BY RANGE (bucket);
ALTER TABLE bench_src_minute ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT '';
CREATE UNIQUE INDEX IF NOT EXISTS bench_src_minute_key ON bench_src_minute (tenant, bucket, type, source);
CREATE TABLE IF NOT EXISTS bench_src_hour (LIKE bench_src_minute);
CREATE UNIQUE INDEX IF NOT EXISTS bench_src_hour_key ON bench_src_hour (tenant, bucket, type, source);
CREATE TABLE IF NOT EXISTS bench_src_day (LIKE bench_src_minute);
CREATE UNIQUE INDEX IF NOT EXISTS bench_src_day_key ON bench_src_day (tenant, bucket, type, source);
DO $$ BEGIN
  FOR d IN -2..2 LOOP
    EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF bench_src_minute FOR VALUES FROM (%L) TO (%L)',
      'bench_src_minute_' || (d + 2), ((current_date + d)::timestamp AT TIME ZONE 'UTC'), ((current_date + d + 1)::timestamp AT TIME ZONE 'UTC'));
  END LOOP;
END $$;`;

const SOURCE_MERGE = `WITH ${INSERT_EVENTS_CTES.replace('RETURNING tenant, type, occurred_at, value', "RETURNING tenant, type, coalesce(source, '') AS source, occurred_at, value")},
${rollupCtes({ dimensions: ['type', 'source'], tablePrefix: 'bench_src', levels: 3 })}
SELECT coalesce(sum(event_count), 0)::int AS inserted FROM bench_src_minute_delta`;

const MINUTE_ONLY_MERGE = `WITH ${INSERT_EVENTS_CTES},
${rollupCtes({ dimensions: ['type'], tablePrefix: 'rollup', levels: 1 })}
SELECT coalesce(sum(event_count), 0)::int AS inserted FROM rollup_minute_delta`;

const ALL_VARIANTS: readonly Variant[] = [
  { name: 'no rollups', merge: PLAIN_MERGE },
  { name: 'merge statement (minute, hour, day)', merge: MERGE_STAGING, check: 'rollup_minute' },
  { name: 'trigger (minute, hour, day)', merge: PLAIN_MERGE, setup: TRIGGER_SETUP, check: 'rollup_minute' },
  { name: 'merge statement, minute only', merge: MINUTE_ONLY_MERGE, check: 'rollup_minute' },
  { name: 'merge statement, type × source', merge: SOURCE_MERGE, setup: SOURCE_TABLES, tables: 'bench_src_minute, bench_src_hour, bench_src_day', check: 'bench_src_minute' },
];

/** The traffic of one scenario: how many tenants, how far back timestamps spread, how many writers at once. */
export interface Scenario {
  readonly name: string;
  readonly tenants: number;
  readonly spreadMinutes: number;
  readonly writers: number;
  /** Pads each event's `data` to about this many bytes (0: the load test's own sizes, ~100 bytes). */
  readonly dataBytes?: number;
}

/** Events per second of one variant in one scenario (median of the rounds), and the rollup rows per batch. */
export interface RollupCostRow {
  readonly scenario: string;
  readonly variant: string;
  readonly eventsPerSec: number;
  /** Median time of one step: one batch per writer, written at once. */
  readonly msPerBatch: number;
  /** CPU time of the database backends per 5000-event batch: what the variant costs Postgres itself, which the
   * other work on a shared machine disturbs far less than wall time. */
  readonly backendCpuMsPerBatch: number;
  readonly relative: number;
  readonly groupsPerBatch: number;
}

/** Distinct (tenant, type, minute) of a batch: the minute rollup rows its write upserts. */
function minuteGroups(batch: readonly StreamEntry[]): number {
  const groups = new Set<string>();
  for (const entry of batch) {
    for (const row of parseCopyRows(entry.rows)) groups.add(`${row.tenant}\t${row.type}\t${Math.floor(row.occurredAt / 60_000)}`);
  }
  return groups.size;
}

function batchesFor(scenario: Scenario, events: number, seed: number): StreamEntry[][] {
  const random = seededRandom(seed);
  const now = Date.now();
  const limits = { retentionDays: 30, maxEventDataBytes: 32 * 1024 };
  const entries: StreamEntry[] = [];
  for (let n = 0; n < events; n += EVENTS_PER_ENTRY) {
    const tenant = `tenant-${entries.length % scenario.tenants}`;
    const valid: ValidEvent[] = [];
    for (let i = 0; i < EVENTS_PER_ENTRY; i++) {
      const raw = generateEvent(random, n + i);
      if (scenario.dataBytes) raw.data.pad = 'x'.repeat(scenario.dataBytes);
      const timestamp = new Date(now - Math.floor(random() * scenario.spreadMinutes * 60_000)).toISOString();
      const check = checkEvent({ ...raw, timestamp }, now, limits);
      if (!check.ok) throw new Error(`generated an invalid event: ${JSON.stringify(check.errors)}`);
      valid.push(check.event);
    }
    entries.push(decodeEntry(encodeEntry(tenant, 'normal', now, valid)));
  }
  const batches: StreamEntry[][] = [];
  for (let i = 0; i < entries.length; i += ENTRIES_PER_BATCH) batches.push(entries.slice(i, i + ENTRIES_PER_BATCH));
  return batches;
}

const TRUNCATE = 'TRUNCATE events, idempotency_keys, rollup_minute, rollup_hour, rollup_day';

/** A variant's own database (created and migrated by the caller): the variants run side by side. */
export interface VariantDatabase {
  readonly pool: Pool;
}

/** How many databases measureRollupCost needs, one per variant. */
export const VARIANT_COUNT = ALL_VARIANTS.length;

/** CPU µs so far of every backend connected to the pool's database. */
async function backendCpu(pool: Pool, pids: Set<number>): Promise<number> {
  const { rows } = await pool.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
  for (const r of rows) pids.add(r.pid);
  const { rows: self } = await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  pids.add(self[0]!.pid);
  let total = 0;
  for (const pid of pids) total += processCpuMicros(pid) ?? 0;
  return total;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const WARM_UP_STEPS = 2;

/**
 * Writes `events` events per scenario through writeEntries with every variant, each into its own database. The
 * variants take turns batch by batch (in rotating order), so a burst of load from elsewhere on this shared
 * machine falls on all of them alike; the figure of a variant is the sum of its batch times after a warm-up.
 */
export async function measureRollupCost(
  databases: readonly VariantDatabase[],
  scenarios: readonly Scenario[],
  events: number,
  only: readonly number[] = ALL_VARIANTS.map((_, i) => i),
): Promise<RollupCostRow[]> {
  const variants = only.map((i) => ALL_VARIANTS[i]!);
  const rows: RollupCostRow[] = [];
  for (const [i, variant] of variants.entries()) if (variant.setup) await databases[i]!.pool.query(variant.setup);
  for (const scenario of scenarios) {
    const batches = batchesFor(scenario, events, 7);
    const steps = Math.floor(batches.length / scenario.writers);
    const seconds = variants.map(() => 0);
    const perBatch: number[][] = variants.map(() => []);
    const cpuMicros = variants.map(() => 0);
    const pids = variants.map(() => new Set<number>());
    let measuredEvents = 0;
    for (const [i, variant] of variants.entries()) await databases[i]!.pool.query(variant.tables ? `${TRUNCATE}, ${variant.tables}` : TRUNCATE);
    for (let step = 0; step < steps; step++) {
      const group = batches.slice(step * scenario.writers, (step + 1) * scenario.writers);
      for (let k = 0; k < variants.length; k++) {
        const v = (step + k) % variants.length;
        const pool = databases[v]!.pool;
        const cpuBefore = await backendCpu(pool, pids[v]!);
        const started = performance.now();
        await Promise.all(group.map((batch) => writeEntries(pool, batch, { merge: variants[v]!.merge })));
        const elapsed = (performance.now() - started) / 1000;
        const cpu = (await backendCpu(pool, pids[v]!)) - cpuBefore;
        if (step >= WARM_UP_STEPS) {
          cpuMicros[v]! += cpu;
          seconds[v]! += elapsed;
          perBatch[v]!.push(elapsed * 1000);
        }
      }
      if (step >= WARM_UP_STEPS) measuredEvents += group.reduce((n, b) => n + b.reduce((m, e) => m + e.count, 0), 0);
    }
    const groups = median(batches.map(minuteGroups));
    for (const [i, variant] of variants.entries()) {
      if (!variant.check) continue;
      const { rows: r } = await databases[i]!.pool.query<{ stored: string; counted: string }>(
        `SELECT (SELECT count(*) FROM events) AS stored, (SELECT sum(event_count) FROM ${variant.check}) AS counted`,
      );
      if (r[0]!.stored !== r[0]!.counted) throw new Error(`${variant.name}: rollups count ${r[0]!.counted}, events hold ${r[0]!.stored}`);
    }
    const base = measuredEvents / seconds[0]!;
    for (const [i, variant] of variants.entries()) {
      rows.push({
        scenario: scenario.name,
        variant: variant.name,
        eventsPerSec: Math.round(measuredEvents / seconds[i]!),
        msPerBatch: Math.round(median(perBatch[i]!) * 10) / 10,
        relative: Math.round((measuredEvents / seconds[i]! / base) * 1000) / 1000,
        groupsPerBatch: groups,
        backendCpuMsPerBatch: Math.round(cpuMicros[i]! / 1000 / ((steps - WARM_UP_STEPS) * scenario.writers)),
      });
    }
    console.error(`rollup cost: ${scenario.name} done`);
  }
  for (const db of databases) await db.pool.query(TRUNCATE);
  return rows;
}

/** The merge statement's own time per batch, with and without each way of keeping rollups. */
export interface OverheadFigures {
  readonly scenario: string;
  /** Median wall time of the plain statement, and the median paired difference of each rollup variant. */
  readonly plainMs: number;
  readonly mergeMs: number;
  readonly triggerMs: number;
  /** Mean backend CPU time of the plain statement, and the mean difference of each rollup variant: CPU time is
   * not inflated by waiting for a core, and its 10 ms tick averages out over the samples. */
  readonly plainCpuMs: number;
  readonly mergeCpuMs: number;
  readonly triggerCpuMs: number;
  readonly samples: number;
}

/** The same entries with new event ids (the id is the first field of every COPY row). */
function withFreshIds(batch: readonly StreamEntry[]): StreamEntry[] {
  return batch.map((entry) => ({ ...entry, rows: entry.rows.replace(/^[0-9a-f-]{36}\t/gm, () => `${uuidv7()}\t`) }));
}

const pairedMedian = (xs: number[], ys: number[]) => median(xs.map((x, i) => x - ys[i]!));

/**
 * The statement alone, in isolation from COPY, commit and the rest of the machine's noise: each sample stages
 * the same batch three times in one database and times only the merge statement — plain, with the rollups in
 * the merge statement, plain with the trigger firing — rolling each back, so every sample starts from the same
 * state (rollup rows of those buckets already present, as in steady traffic). The figures are medians of the
 * per-sample differences against the plain statement.
 */
export async function measureRollupOverhead(pool: Pool, scenario: Scenario, events: number, samples: number): Promise<OverheadFigures> {
  const batches = batchesFor(scenario, events, 11);
  await pool.query(`${TRUNCATE}; ${TRIGGER_SETUP}`);
  // Rollup rows for every bucket the batches touch, then no events: each sample inserts all its events.
  await pool.query('ALTER TABLE events DISABLE TRIGGER bench_rollup');
  for (const batch of batches) await writeEntries(pool, batch);
  await pool.query('TRUNCATE events, idempotency_keys');
  await pool.query('ALTER TABLE events ENABLE TRIGGER bench_rollup');
  const client = await pool.connect();
  // Created once and committed, so that rolling a sample back does not drop it.
  await client.query(CREATE_STAGING);
  const times = { plain: [] as number[], merge: [] as number[], trigger: [] as number[] };
  const cpu = { plain: [] as number[], merge: [] as number[], trigger: [] as number[] };
  const { rows: self } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const backend = self[0]!.pid;
  try {
    for (let i = 0; i < samples; i++) {
      const order = (['plain', 'merge', 'trigger'] as const).map((_, k, all) => all[(i + k) % 3]!);
      // Rolled-back row versions of the last sample would slow this one down (the same keys again): vacuum them.
      await pool.query('VACUUM rollup_minute, rollup_hour, rollup_day');
      await pool.query('VACUUM events, idempotency_keys');
      for (const variant of order) {
        // Fresh event ids every time: re-inserting ids whose insert was rolled back costs more than a new id.
        const batch = withFreshIds(batches[i % batches.length]!);
        // A commit empties the staging table (ON COMMIT DELETE ROWS); a rollback leaves dead rows for the next scan.
        await client.query(`TRUNCATE ${STAGING}`);
        await client.query('BEGIN');
        // Triggers do not fire for a session in replica mode: the plain and merge samples run without it.
        if (variant !== 'trigger') await client.query("SET LOCAL session_replication_role = 'replica'");
        await copyIntoStaging(client, batch);
        const cpuBefore = processCpuMicros(backend) ?? 0;
        const started = performance.now();
        await client.query(variant === 'merge' ? MERGE_STAGING : PLAIN_MERGE);
        times[variant].push(performance.now() - started);
        cpu[variant].push(((processCpuMicros(backend) ?? 0) - cpuBefore) / 1000);
        await client.query('ROLLBACK');
      }
    }
  } finally {
    client.release();
    await pool.query(`DROP TRIGGER bench_rollup ON events; ${TRUNCATE}`);
  }
  const round = (x: number) => Math.round(x * 10) / 10;
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return {
    scenario: scenario.name,
    plainMs: round(median(times.plain)),
    mergeMs: round(pairedMedian(times.merge, times.plain)),
    triggerMs: round(pairedMedian(times.trigger, times.plain)),
    plainCpuMs: round(mean(cpu.plain)),
    mergeCpuMs: round(mean(cpu.merge) - mean(cpu.plain)),
    triggerCpuMs: round(mean(cpu.trigger) - mean(cpu.plain)),
    samples,
  };
}

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
