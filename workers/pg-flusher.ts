import { Registry } from 'prom-client';
import { BREAKER_CODE, type Breaker } from '../lib/breaker.js';
import type { Config } from '../lib/config.js';
import type { Pool, PoolClient } from '../lib/db.js';
import type { Logger } from '../lib/logger.js';
import { writeEntriesInTransaction, type WriteResult } from '../lib/pg-batch-write.js';
import {
  CLAIM_ROW,
  CLAIM_ROWS,
  COUNT_FAILURE,
  OLDEST_IDS,
  DEAD_LETTER_ROWS,
  DELETE_ROWS,
  setQueuePersistence,
  type QueueRow,
} from '../lib/pg-queue.js';
import type { QueueConsumer } from '../lib/queue.js';
import { decodeEntry, type StreamEntry } from '../lib/stream-entry.js';
import { createPostgresWriteBreaker, retryLater, type FlusherStats } from './flusher.js';
import type { WorkerMetrics } from './worker-metrics.js';

/** What the Postgres-queue flusher reads from, writes to and reports to. */
export interface PgFlusherDeps {
  readonly config: Config;
  readonly pool: Pool;
  readonly logger: Logger;
  readonly metrics?: WorkerMetrics;
  /** Guards each claim-and-write transaction; one with a private registry when omitted. */
  readonly breaker?: Breaker;
}

/** The Postgres-queue flusher: the Flusher's contract over `event_queue`. */
export interface PgFlusher extends QueueConsumer {
  readonly stats: Readonly<FlusherStats>;
}

const CLAIM_CHUNK_ROWS = 500;
const MAX_BACKOFF_MS = 5000;

interface Claimed {
  readonly row: QueueRow;
  readonly entry: StreamEntry;
}

/** What one transaction did. */
interface Pass {
  readonly rows: number;
  readonly events: number;
}

/**
 * The flush worker of QUEUE=postgres. Each pass is one transaction: claim the oldest rows no other worker holds
 * (FOR UPDATE SKIP LOCKED) up to FLUSH_BATCH_EVENTS events, write their events with the batch merge, delete the
 * rows, COMMIT. The delete commits with the write or not at all, so an entry is written exactly once by
 * construction: a worker that dies mid-pass loses its connection, Postgres rolls the pass back and the rows are
 * claimable again; nothing is held in memory between passes. A pass that found less than a full batch waits
 * FLUSH_INTERVAL_MS before the next (the batching delay of the Redis flusher). A batch Postgres refuses on its
 * own merits is retried row by row: a row failing on its own counts an attempt, and after
 * MAX_DELIVERY_ATTEMPTS moves to event_queue_dead_letter.
 */
export function createPgFlusher(deps: PgFlusherDeps): PgFlusher {
  const { config, pool, metrics } = deps;
  const breaker = deps.breaker ?? createPostgresWriteBreaker(config, new Registry(), deps.logger);
  const log = deps.logger.child({ queue: 'postgres' });
  const stats: FlusherStats = {
    entriesRead: 0,
    entriesReclaimed: 0,
    eventsWritten: 0,
    duplicatesDropped: 0,
    flushes: 0,
    flushErrors: 0,
    deadLettered: 0,
  };
  let stopping = false;
  let loop: Promise<void> | undefined;
  let closing: Promise<void> | undefined;
  let wake: (() => void) | undefined;

  /** Sleeps, or less when close() is called. */
  function pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      }
      wake = done;
    });
  }

  async function claim(client: PoolClient): Promise<QueueRow[]> {
    const started = performance.now();
    const rows: QueueRow[] = [];
    let events = 0;
    let after = '0';
    for (;;) {
      const { rows: chunk } = await client.query<QueueRow>(CLAIM_ROWS, [after, CLAIM_CHUNK_ROWS]);
      rows.push(...chunk);
      for (const r of chunk) events += r.events;
      if (chunk.length < CLAIM_CHUNK_ROWS || events >= config.flushBatchEvents) break;
      after = chunk.at(-1)!.id;
    }
    metrics?.pgQueueClaimDuration.observe((performance.now() - started) / 1000);
    return rows;
  }

  /** Moves rows to the dead-letter table (inside the caller's transaction). */
  async function deadLetter(client: PoolClient, ids: string[], reason: string, kind: 'undecodable' | 'write_failed'): Promise<void> {
    await client.query(DEAD_LETTER_ROWS, [ids, reason.slice(0, 1000)]);
    stats.deadLettered += ids.length;
    metrics?.deadLettered.inc({ reason: kind }, ids.length);
    log.error({ rows: ids, reason }, 'queue rows moved to the dead-letter table');
  }

  /** Decodes what was claimed; rows that are not an entry go to the dead-letter table at once. */
  async function decode(client: PoolClient, rows: QueueRow[]): Promise<Claimed[]> {
    const good: Claimed[] = [];
    for (const row of rows) {
      try {
        good.push({ row, entry: decodeEntry(row.entry) });
      } catch (err) {
        await deadLetter(client, [row.id], `undecodable entry: ${(err as Error).message}`, 'undecodable');
      }
    }
    return good;
  }

  function observe(claimed: Claimed[], result: WriteResult, started: number, committedAt: number): void {
    stats.flushes++;
    stats.entriesRead += claimed.length;
    stats.eventsWritten += result.inserted;
    stats.duplicatesDropped += result.duplicates;
    if (!metrics) return;
    const events = claimed.reduce((n, c) => n + c.entry.count, 0);
    metrics.entriesRead.inc(claimed.length);
    metrics.flushDuration.observe({ outcome: 'ok' }, (performance.now() - started) / 1000);
    metrics.batchEvents.observe(events);
    metrics.rowsWritten.inc(result.inserted);
    metrics.duplicatesDropped.inc(result.duplicates);
    if (result.newestMinute != null) metrics.noteRollupMinute(result.newestMinute);
    for (const { entry } of claimed) {
      const seconds = Math.max(0, committedAt - entry.receivedAt) / 1000;
      for (let i = 0; i < entry.count; i++) metrics.timeToDurable.observe(seconds);
    }
  }

  /**
   * One transaction: claim (all free rows, or only `onlyId`), write, delete, commit. Rows are claimed under the
   * statement timeout too, so a stalled database cancels the pass rather than holding the connection.
   */
  async function pass(signal: AbortSignal, onlyId?: string): Promise<Pass> {
    const started = performance.now();
    const client = await pool.connect();
    let broken = false;
    try {
      signal.throwIfAborted();
      await client.query('BEGIN');
      await client.query(`SET LOCAL statement_timeout = ${Math.max(1, Math.floor(config.dbWriteTimeoutMs))}`);
      const rows = onlyId === undefined ? await claim(client) : (await client.query<QueueRow>(CLAIM_ROW, [onlyId])).rows;
      const claimed = await decode(client, rows);
      const result = await writeEntriesInTransaction(
        client,
        claimed.map((c) => c.entry),
        { signal },
      );
      if (claimed.length > 0) await client.query(DELETE_ROWS, [claimed.map((c) => c.row.id)]);
      await client.query('COMMIT');
      if (claimed.length > 0) observe(claimed, result, started, Date.now());
      return { rows: rows.length, events: claimed.reduce((n, c) => n + c.entry.count, 0) };
    } catch (err) {
      // A failed COPY can leave the connection mid-protocol; do not hand it back to the pool.
      broken = true;
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release(broken);
    }
  }

  /** After a batch Postgres refused on its merits: each row on its own, counting the failures of those that fail. */
  async function oneByOne(): Promise<void> {
    const { rows } = await pool.query<{ id: string }>(OLDEST_IDS, [CLAIM_CHUNK_ROWS]);
    for (const { id } of rows) {
      try {
        await breaker.fire((signal) => pass(signal, id));
      } catch (err) {
        if (retryLater(err)) throw err;
        const { rows: counted } = await pool.query<{ attempts: number }>(COUNT_FAILURE, [id]);
        const attempts = counted[0]?.attempts ?? 0;
        log.error({ err, row: id, attempts }, 'queue row failed to write on its own');
        if (attempts >= config.maxDeliveryAttempts) {
          const client = await pool.connect();
          try {
            await deadLetter(client, [id], `write failed ${attempts} times: ${(err as Error).message}`, 'write_failed');
          } finally {
            client.release();
          }
        }
      }
    }
  }

  async function run(): Promise<void> {
    let backoffMs = 0;
    while (!stopping) {
      try {
        const done = await breaker.fire((signal) => pass(signal));
        backoffMs = 0;
        if (done.events < config.flushBatchEvents && !stopping) await pause(config.flushIntervalMs);
      } catch (err) {
        backoffMs = Math.min(MAX_BACKOFF_MS, Math.max(100, backoffMs * 2));
        if (retryLater(err)) {
          // While the breaker is open nothing was tried: it logged the opening once.
          if ((err as { code?: string }).code !== BREAKER_CODE.open) {
            stats.flushErrors++;
            metrics?.flushErrors.inc({ kind: 'transient' });
            log.error({ err, retryInMs: backoffMs }, 'queue pass failed; retrying');
          }
          await pause(backoffMs);
          continue;
        }
        stats.flushErrors++;
        metrics?.flushErrors.inc({ kind: 'permanent' });
        log.error({ err }, 'batch write failed; writing the queued rows one by one');
        await oneByOne().catch((e: unknown) => log.error({ err: e }, 'writing queued rows one by one failed; retrying'));
        await pause(backoffMs);
      }
    }
  }

  return {
    stats,
    // Rows are held by a transaction, never in memory between passes.
    buffered: () => 0,
    async start() {
      if (await setQueuePersistence(pool, config.queuePostgresTable))
        log.warn({ table: config.queuePostgresTable }, 'changed the queue table persistence');
      loop = run();
      log.info('postgres queue flusher started');
    },
    close() {
      closing ??= (async () => {
        stopping = true;
        wake?.();
        // The pass in progress commits or rolls back on its own; nothing else is held.
        await loop?.catch(() => {});
        if (!deps.breaker) breaker.shutdown();
      })();
      return closing;
    },
  };
}
