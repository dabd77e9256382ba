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

// One statement decides what is new. The first idempotency key of a (tenant, key) claims it in
// idempotency_keys (ORDER BY id: the earliest UUIDv7 wins within a batch); an event is inserted when it has no
// key or its key is claimed by this very event: just now, or before the write by the Postgres queue's enqueue
// (QUEUE=postgres claims keys when it answers; lib/pg-queue.ts). ON CONFLICT on the events primary key
// (occurred_at, id) turns a redelivered entry into a no-op, also for an event whose own claim is older.
export const MERGE_STAGING = `
WITH claimed AS (
  INSERT INTO idempotency_keys (tenant, key, event_id, created_at)
  SELECT tenant, idempotency_key, id, ${RECEIVED_AT}
  FROM ${STAGING}
  WHERE idempotency_key IS NOT NULL
  ORDER BY id
  ON CONFLICT (tenant, key) DO NOTHING
  RETURNING event_id
)
INSERT INTO events (${EVENT_COLUMNS})
SELECT id, tenant, type, ${OCCURRED_AT}, ${RECEIVED_AT}, source, idempotency_key, priority, value, data
FROM ${STAGING} s
WHERE s.idempotency_key IS NULL OR s.id IN (SELECT event_id FROM claimed)
   OR EXISTS (SELECT 1 FROM idempotency_keys k WHERE k.tenant = s.tenant AND k.key = s.idempotency_key AND k.event_id = s.id)
ON CONFLICT DO NOTHING`;

const COPY_CHUNK_CHARS = 256 * 1024;

async function copyIntoStaging(client: PoolClient, entries: readonly StreamEntry[]): Promise<void> {
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
}

/**
 * Stores the events of `entries` in one transaction: COPY into a temporary staging table, then one
 * INSERT … ON CONFLICT DO NOTHING that keeps each event and each (tenant, idempotency key) once.
 */
export async function writeEntries(pool: Pool, entries: readonly StreamEntry[], options: WriteOptions = {}): Promise<WriteResult> {
  const events = entries.reduce((n, e) => n + e.count, 0);
  if (events === 0) return { inserted: 0, duplicates: 0 };
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
 * Postgres queue's delete of the rows it claimed) commit or roll back with it.
 */
export async function writeEntriesInTransaction(client: PoolClient, entries: readonly StreamEntry[], options: WriteOptions = {}): Promise<WriteResult> {
  const events = entries.reduce((n, e) => n + e.count, 0);
  if (events === 0) return { inserted: 0, duplicates: 0 };
  const { signal, statementTimeoutMs } = options;
  // SET LOCAL takes no bind parameters; the value is an integer from our own configuration.
  if (statementTimeoutMs) await client.query(`SET LOCAL statement_timeout = ${Math.max(1, Math.floor(statementTimeoutMs))}`);
  await client.query(CREATE_STAGING);
  await copyIntoStaging(client, entries);
  signal?.throwIfAborted();
  const result = await client.query(MERGE_STAGING);
  const inserted = result.rowCount ?? 0;
  return { inserted, duplicates: events - inserted };
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
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection ended/i.test(message);
}
