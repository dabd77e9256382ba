import type { Pool, PoolClient } from './db.js';
import type { QueueDepth } from './queue.js';

/** The table holding queued entries (QUEUE=postgres), one row per accepted request; see migration 009. */
export const QUEUE_TABLE = 'event_queue';
/** Rows no write could store. */
export const QUEUE_DEAD_LETTER_TABLE = 'event_queue_dead_letter';

/** One claimed row. */
export interface QueueRow {
  readonly id: string;
  readonly events: number;
  readonly attempts: number;
  readonly entry: string;
}

/** Appends one entry that needs no idempotency decision. */
export const INSERT_ENTRY = `INSERT INTO ${QUEUE_TABLE} (events, entry) VALUES ($1, $2)`;

// One statement, so one round trip and atomic like the Redis enqueue script. $1 tenant, $2 received (ms),
// $3 event ids, $4 idempotency keys (null without), $5 COPY rows, $6-$7 the entry header around its count.
// Each new key is claimed in idempotency_keys for its event (ORDER BY n: the first event of the request wins a
// key it repeats); the events without a key or whose key they claimed are queued as one entry; the ids of the
// claims made are returned. A key already claimed (stored, or queued by an earlier request) is not: its event
// is not queued, and its answer is the id claimed first (`findStoredIds`, read after this commits, because a
// claim this statement waited on is not in its snapshot).
export const ENQUEUE_KEYED = `
WITH input AS (
  SELECT * FROM unnest($3::uuid[], $4::text[], $5::text[]) WITH ORDINALITY AS u(id, key, row, n)
), claimed AS (
  INSERT INTO idempotency_keys (tenant, key, event_id, created_at)
  SELECT $1, key, id, to_timestamp($2::float8 / 1000) FROM input WHERE key IS NOT NULL ORDER BY n
  ON CONFLICT (tenant, key) DO NOTHING
  RETURNING event_id
), kept AS (
  SELECT row, n FROM input WHERE key IS NULL OR id IN (SELECT event_id FROM claimed)
), queued AS (
  INSERT INTO ${QUEUE_TABLE} (events, entry)
  SELECT count(*), $6 || count(*) || $7 || string_agg(row, '' ORDER BY n) FROM kept HAVING count(*) > 0
)
SELECT event_id::text AS id FROM claimed`;

/**
 * Claims up to $2 rows after id $1, oldest first, skipping rows another worker's transaction holds: a claimed
 * row stays locked until the claiming transaction commits (it deleted the row) or ends otherwise (the row is
 * free again, e.g. its worker died: Postgres aborts the transaction of a lost connection).
 */
export const CLAIM_ROWS = `SELECT id::text, events, attempts, entry FROM ${QUEUE_TABLE} WHERE id > $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED`;

/** Claims one row by id ($1), unless another worker holds it. */
export const CLAIM_ROW = `SELECT id::text, events, attempts, entry FROM ${QUEUE_TABLE} WHERE id = $1 FOR UPDATE SKIP LOCKED`;

/** The ids of the $1 oldest rows, claimed or not (the row-by-row retry claims each again). */
export const OLDEST_IDS = `SELECT id::text FROM ${QUEUE_TABLE} ORDER BY id LIMIT $1`;

/** Deletes the rows written, in the transaction that wrote them. */
export const DELETE_ROWS = `DELETE FROM ${QUEUE_TABLE} WHERE id = ANY($1::bigint[])`;

/** Counts one failed write of a row on its own; returns its attempts so far. */
export const COUNT_FAILURE = `UPDATE ${QUEUE_TABLE} SET attempts = attempts + 1 WHERE id = $1 RETURNING attempts`;

/** Moves rows to the dead-letter table with a reason ($2), in one statement. */
export const DEAD_LETTER_ROWS = `
WITH moved AS (DELETE FROM ${QUEUE_TABLE} WHERE id = ANY($1::bigint[]) RETURNING id, entry)
INSERT INTO ${QUEUE_DEAD_LETTER_TABLE} (id, entry, reason) SELECT id, entry, $2 FROM moved
ON CONFLICT (id) DO NOTHING`;

/**
 * The backlog in entries: the span of ids between the oldest and newest queued row. Two index probes, whatever
 * the backlog (a count(*) would read every row every second); an upper bound, since a rolled-back insert or a
 * row claimed out of order leaves a gap.
 */
const DEPTH = `SELECT coalesce(max(id) - min(id) + 1, 0)::float8 AS depth, extract(epoch FROM now() - min(enqueued_at))::float8 AS oldest FROM ${QUEUE_TABLE}`;

/** The backlog (entries) and the age of the oldest queued entry (seconds, 0 when empty). */
export async function queueBacklog(pool: Pool): Promise<{ entries: number; oldestSeconds: number }> {
  const { rows } = await pool.query<{ depth: number; oldest: number | null }>(DEPTH);
  return { entries: rows[0]?.depth ?? 0, oldestSeconds: Math.max(0, rows[0]?.oldest ?? 0) };
}

/** The shedder's backlog signal in Postgres mode; undefined while Postgres cannot answer. */
export function pgQueueDepth(pool: Pool): QueueDepth {
  return async () => {
    try {
      return (await queueBacklog(pool)).entries;
    } catch {
      return undefined;
    }
  };
}

/**
 * Makes the queue table logged or unlogged as configured. ALTER TABLE rewrites the table under an exclusive
 * lock (inserts wait meanwhile), so it runs only when the table differs; concurrent starters serialise on it.
 */
export async function setQueuePersistence(client: Pool | PoolClient, mode: 'logged' | 'unlogged'): Promise<boolean> {
  const { rows } = await client.query<{ p: string }>(`SELECT relpersistence AS p FROM pg_class WHERE oid = '${QUEUE_TABLE}'::regclass`);
  const isLogged = rows[0]?.p === 'p';
  if (isLogged === (mode === 'logged')) return false;
  await client.query(`ALTER TABLE ${QUEUE_TABLE} SET ${mode === 'logged' ? 'LOGGED' : 'UNLOGGED'}`);
  return true;
}
