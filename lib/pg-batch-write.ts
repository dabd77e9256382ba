import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { from as copyFrom } from 'pg-copy-streams';
import type { Pool, PoolClient } from './db.js';
import { COPY_COLUMNS } from './copy-text.js';
import { SQLSTATE } from './errors.js';
import type { StreamEntry } from './stream-entry.js';

/** What one write stored. */
export interface WriteResult {
  /** Rows inserted into `events`. */
  readonly inserted: number;
  /** Events not inserted because their id or (tenant, idempotency key) was already stored. */
  readonly duplicates: number;
  /** Start (epoch ms) of the newest minute, not in the future, to which this write added events; null if none. */
  readonly newestMinute?: number | null;
}

/** Name of the per-connection temporary staging table. */
export const STAGING = 'floodgate_staging';
const EVENT_COLUMNS = 'id, tenant, type, occurred_at, received_at, source, idempotency_key, priority, value, data';

// Created once per connection; ON COMMIT DELETE ROWS empties it at every commit without a TRUNCATE.
export const CREATE_STAGING = `CREATE TEMP TABLE IF NOT EXISTS ${STAGING} (
  id uuid NOT NULL, tenant text NOT NULL, type text NOT NULL, occurred_ms bigint NOT NULL, received_ms bigint NOT NULL,
  source text, idempotency_key text, priority text NOT NULL, value double precision, data jsonb
) ON COMMIT DELETE ROWS`;

const OCCURRED_AT = 'to_timestamp(occurred_ms::float8 / 1000)';
const RECEIVED_AT = 'to_timestamp(received_ms::float8 / 1000)';

// The common table expressions that decide what is new. The first idempotency key of a (tenant, key) claims it in
// idempotency_keys (the earliest UUIDv7 wins within a batch); an event is inserted when it has no key or its
// key is claimed by this very event: just now, or before the write by the Postgres queue's enqueue
// (QUEUE=postgres claims keys when it answers; lib/pg-queue.ts). ON CONFLICT on the events primary key turns a
// redelivered entry into a no-op, also for an event whose own claim is older. `inserted` returns what was
// stored, and only that: the rollups count it.
// Both inserts run in key order (ORDER BY also makes the claims complete before the first event is inserted), so
// two transactions writing the same rows lock them in the same order and cannot deadlock on each other.
export const INSERT_EVENTS_CTES = `
claimed AS (
  INSERT INTO idempotency_keys (tenant, key, event_id, created_at)
  SELECT tenant, idempotency_key, id, ${RECEIVED_AT}
  FROM ${STAGING}
  WHERE idempotency_key IS NOT NULL
  ORDER BY tenant, idempotency_key, id
  ON CONFLICT (tenant, key) DO NOTHING
  RETURNING event_id
),
inserted AS (
  INSERT INTO events (${EVENT_COLUMNS})
  SELECT id, tenant, type, ${OCCURRED_AT}, ${RECEIVED_AT}, source, idempotency_key, priority, value, data
  FROM ${STAGING} s
  WHERE s.idempotency_key IS NULL OR s.id IN (SELECT event_id FROM claimed)
     OR EXISTS (SELECT 1 FROM idempotency_keys k WHERE k.tenant = s.tenant AND k.key = s.idempotency_key AND k.event_id = s.id)
  ORDER BY id, ${OCCURRED_AT}
  ON CONFLICT DO NOTHING
  RETURNING tenant, type, occurred_at, value
)`;

const ROLLUP_SET = `event_count = r.event_count + EXCLUDED.event_count,
    value_count = r.value_count + EXCLUDED.value_count,
    value_sum = r.value_sum + EXCLUDED.value_sum,
    value_min = LEAST(r.value_min, EXCLUDED.value_min),
    value_max = GREATEST(r.value_max, EXCLUDED.value_max)`;

/**
 * The rollup tables (db/migrations/006_rollups.sql, 010_rollup_watermark.sql) and the bucket width of each. The
 * batch write adds to the first through rollup_pending (011_rollup_pending.sql); the maintenance loop folds that
 * into it and rolls it up into the others (lib/rollup-maintenance.ts).
 */
export const ROLLUP_LEVELS = [
  { table: 'rollup_minute', width: '1 minute' },
  { table: 'rollup_5m', width: '5 minutes' },
  { table: 'rollup_hour', width: '1 hour' },
  { table: 'rollup_day', width: '1 day' },
] as const;

/** What rollupCtes groups by besides (tenant, bucket), and the tables it writes (`<prefix>_minute`, …). */
export interface RollupShape {
  readonly dimensions: readonly string[];
  readonly tablePrefix: string;
  /** How many levels, from the minute up (1: minute only, as the product writes; 4: minute, 5 minutes, hour, day). */
  readonly levels: number;
}

const PRODUCT_SHAPE: RollupShape = { dimensions: ['type'], tablePrefix: 'rollup', levels: 1 };

function rollupLevels(shape: RollupShape) {
  return ROLLUP_LEVELS.slice(0, shape.levels).map(({ table, width }) => ({
    table: table.replace(/^rollup/, shape.tablePrefix),
    width,
  }));
}

/**
 * The common table expressions that aggregate the rows of a CTE named `inserted` into the deltas of each level
 * (`<prefix>_minute_delta` from `inserted`, each next level from the one below): what the write adds to the rollups.
 */
export function rollupDeltaCtes(shape: RollupShape = PRODUCT_SHAPE): string {
  const dims = shape.dimensions.join(', ');
  const groupBy = shape.dimensions.map((_, i) => i + 3).join(', ');
  const levels = rollupLevels(shape);
  return levels
    .map(({ table, width }, i) => {
      const from = i === 0 ? 'inserted' : `${levels[i - 1]!.table}_delta`;
      const aggregates =
        i === 0
          ? `count(*) AS event_count, count(value) AS value_count, coalesce(sum(value), 0) AS value_sum, min(value) AS value_min, max(value) AS value_max`
          : `sum(event_count)::bigint AS event_count, sum(value_count)::bigint AS value_count, sum(value_sum) AS value_sum, min(value_min) AS value_min, max(value_max) AS value_max`;
      return `${table}_delta AS (
  SELECT tenant, date_bin('${width}', ${i === 0 ? 'occurred_at' : 'bucket'}, 'epoch') AS bucket, ${dims}, ${aggregates}
  FROM ${from} GROUP BY 1, 2, ${groupBy}
)`;
    })
    .join(',\n');
}

/**
 * The deltas of rollupDeltaCtes added onto the stored rows of every level in the write's own transaction, in
 * primary-key order, so concurrent writers touching the same buckets queue on them instead of deadlocking, and
 * read-committed upserts re-read the latest committed row, so no increment is lost. What the write did before
 * migration 011 (the minute level) and before migration 010 (every level); bench/rollup-variants.ts compares them.
 */
export function rollupCtes(shape: RollupShape = PRODUCT_SHAPE): string {
  const dims = shape.dimensions.join(', ');
  const upserts = rollupLevels(shape).map(
    ({ table }) => `${table}_upsert AS (
  INSERT INTO ${table} AS r (tenant, bucket, ${dims}, event_count, value_count, value_sum, value_min, value_max)
  SELECT * FROM ${table}_delta ORDER BY tenant, bucket, ${dims}
  ON CONFLICT (tenant, bucket, ${dims}) DO UPDATE SET
    ${ROLLUP_SET}
)`,
  );
  return [rollupDeltaCtes(shape), ...upserts].join(',\n');
}

/**
 * The minute deltas of this write appended to rollup_pending, one row per tenant holding its deltas as arrays
 * (db/migrations/011_rollup_pending.sql): plain inserts that lock nothing another write touches. The maintenance
 * loop folds them into rollup_minute; readers add the pending rows to the minute rows meanwhile.
 */
export const PENDING_CTE = `rollup_pending_insert AS (
  INSERT INTO rollup_pending (tenant, lo, hi, buckets, types, event_counts, value_counts, value_sums, value_mins, value_maxs)
  SELECT tenant, min(bucket), max(bucket), array_agg(bucket), array_agg(type), array_agg(event_count), array_agg(value_count),
         array_agg(value_sum), array_agg(value_min), array_agg(value_max)
  FROM rollup_minute_delta GROUP BY tenant
)`;

/**
 * The minutes of this write that lie before the roll-up watermark (late events): recorded in rollup_stale, so that
 * readers ignore the coarse rows of their buckets and the next roll-up recomputes them, in key order. The
 * watermark cannot move before this write commits: the write holds the roll-up lock in shared mode
 * (ROLLUP_SHARED_LOCK), which every roll-up takes in exclusive mode.
 */
export const STALE_CTE = `rollup_stale_insert AS (
  INSERT INTO rollup_stale (tenant, bucket)
  SELECT DISTINCT tenant, bucket FROM rollup_minute_delta
  WHERE bucket < (SELECT upto FROM rollup_watermark)
  ORDER BY 1, 2
  ON CONFLICT DO NOTHING
)`;

/** Taken by every batch write right before its merge statement, in its own statement (whose snapshot then follows it). */
export const ROLLUP_SHARED_LOCK = 'SELECT pg_advisory_xact_lock_shared(floodgate_rollup_key())';

// One statement stores the new events and appends exactly their minute deltas to rollup_pending, in the
// transaction of the write; minutes before the watermark are marked stale for the roll-up.
export const MERGE_STAGING = `WITH ${INSERT_EVENTS_CTES},
${rollupDeltaCtes()},
${PENDING_CTE},
${STALE_CTE}
SELECT coalesce(sum(event_count), 0)::int AS inserted,
       (extract(epoch FROM max(bucket) FILTER (WHERE bucket <= now())) * 1000)::float8 AS newest_minute
FROM rollup_minute_delta`;

const COPY_CHUNK_CHARS = 256 * 1024;

/** COPYs the rows of `entries` into the staging table (created by CREATE_STAGING in the same transaction). */
export async function copyIntoStaging(client: PoolClient, entries: readonly StreamEntry[]): Promise<void> {
  // Entries are already COPY text; grouping them into ~256 KiB chunks keeps the number of writes small.
  const chunks: string[] = [];
  let chunk = '';
  for (const entry of entries) {
    chunk += entry.rows;
    if (chunk.length >= COPY_CHUNK_CHARS) {
      chunks.push(chunk);
      chunk = '';
    }
  }
  if (chunk) chunks.push(chunk);
  const stream = client.query(copyFrom(`COPY ${STAGING} (${COPY_COLUMNS.join(', ')}) FROM STDIN`));
  await pipeline(Readable.from(chunks), stream);
}

/** How long one write may take, and how its caller abandons it. */
export interface WriteOptions {
  /**
   * Postgres cancels any statement of the write that runs longer (lock waits included), so a stalled
   * database frees the connection rather than holding it for as long as the stall lasts.
   */
  readonly statementTimeoutMs?: number;
  /** An aborted signal stops the write before its next statement and throws the abort reason. */
  readonly signal?: AbortSignal;
  /** Another merge statement returning one row with `inserted` (bench/rollup-cost.ts compares variants). */
  readonly merge?: string;
}

/**
 * Stores the events of `entries` in one transaction: COPY into a temporary staging table, then one
 * INSERT … ON CONFLICT DO NOTHING that keeps each event and each (tenant, idempotency key) once and appends the
 * minute deltas of the events it stored to rollup_pending (and marks the minutes before the roll-up watermark stale).
 */
export async function writeEntries(pool: Pool, entries: readonly StreamEntry[], options: WriteOptions = {}): Promise<WriteResult> {
  const events = entries.reduce((n, e) => n + e.count, 0);
  if (events === 0) return { inserted: 0, duplicates: 0, newestMinute: null };
  const { signal } = options;
  signal?.throwIfAborted();
  const client = await pool.connect();
  let broken = false;
  try {
    signal?.throwIfAborted();
    await client.query('BEGIN');
    const result = await writeEntriesInTransaction(client, entries, options);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    // A failed COPY can leave the connection mid-protocol; do not hand it back to the pool.
    broken = true;
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release(broken);
  }
}

/**
 * The write of `writeEntries` inside a transaction the caller opened and commits, so that other statements (the
 * Postgres queue's delete of the rows it claimed) commit or roll back with it, rollups included.
 */
export async function writeEntriesInTransaction(
  client: PoolClient,
  entries: readonly StreamEntry[],
  options: WriteOptions = {},
): Promise<WriteResult> {
  const events = entries.reduce((n, e) => n + e.count, 0);
  if (events === 0) return { inserted: 0, duplicates: 0, newestMinute: null };
  const { signal, statementTimeoutMs } = options;
  // SET LOCAL takes no bind parameters; the value is an integer from our own configuration.
  if (statementTimeoutMs) await client.query(`SET LOCAL statement_timeout = ${Math.max(1, Math.floor(statementTimeoutMs))}`);
  await client.query(CREATE_STAGING);
  await copyIntoStaging(client, entries);
  signal?.throwIfAborted();
  // Two statements in one round trip (simple protocol): the lock, then the merge, whose snapshot is taken after it.
  const results = (await client.query(`${ROLLUP_SHARED_LOCK};\n${options.merge ?? MERGE_STAGING}`)) as unknown as {
    rows: { inserted: number; newest_minute?: number | null }[];
  }[];
  const row = results[results.length - 1]?.rows[0];
  const inserted = row?.inserted ?? 0;
  return { inserted, duplicates: events - inserted, newestMinute: row?.newest_minute ?? null };
}

// 57014 query_canceled: our statement_timeout fired (a stalled database) or an operator cancelled the query;
// the same rows written later can succeed.
const TRANSIENT_CODES = new Set(['40001', '40P01', '53300', '57P01', '57P02', '57P03', '55P03', SQLSTATE.queryCanceled]);
const TRANSIENT_NETWORK = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH']);

/**
 * Whether a write failed for a reason that retrying the same rows later can cure (connection loss, server
 * shutting down, too many connections, deadlock, serialization failure) rather than because of the rows.
 */
export function isTransientDbError(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  if (typeof e?.code === 'string') {
    if (TRANSIENT_CODES.has(e.code) || e.code.startsWith('08') || TRANSIENT_NETWORK.has(e.code)) return true;
  }
  const message = e?.message ?? '';
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection ended/i.test(
    message,
  );
}
