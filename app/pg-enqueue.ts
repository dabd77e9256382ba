import type { Breaker } from '../lib/breaker.js';
import type { Config } from '../lib/config.js';
import type { Pool } from '../lib/db.js';
import type { ValidEvent } from '../lib/event-schema.js';
import { findStoredIds } from '../lib/idempotency-keys.js';
import type { Logger } from '../lib/logger.js';
import { ENQUEUE_KEYED, INSERT_ENTRY } from '../lib/pg-queue.js';
import type { Enqueuer } from '../lib/queue.js';
import { encodeEntry, entryHeader, entryRows } from '../lib/stream-entry.js';
import { guardedWrite } from './guarded-write.js';
import type { ApiMetrics } from './metrics.js';

/** What the Postgres enqueuer writes to and reports to. */
export interface PgEnqueueDeps {
  readonly config: Config;
  readonly pool: Pool;
  /** Guards every insert (the `queue_write` breaker). */
  readonly breaker: Breaker;
  readonly metrics: ApiMetrics;
  readonly logger: Logger;
}

/**
 * The enqueuer of QUEUE=postgres: each accepted request becomes one row of `event_queue` holding the entry the
 * Redis queue would XADD. Postgres is then both queue and store, so idempotency needs no second memory: a keyed
 * request claims its keys in idempotency_keys in the same statement that queues it (lib/pg-queue.ts), and a
 * repeated key is answered with the id claimed first, straight from that table, whether its event is already
 * written or still queued. The worker's merge accepts an event whose key it already holds (lib/pg-batch-write.ts).
 */
export function createPgEnqueuer(deps: PgEnqueueDeps): Enqueuer {
  const { pool, breaker, metrics } = deps;
  const log = deps.logger.child({ scope: 'pg-enqueue' });
  const guarded = <T>(write: () => Promise<T>): Promise<T> => guardedWrite(breaker, metrics.pgQueueWriteDuration, write);

  /** The id each key is claimed by; a key found nowhere (pruned meanwhile) is answered with its own event's id. */
  async function answers(tenant: string, events: readonly ValidEvent[], claimedHere: Set<string>): Promise<string[]> {
    const others = events.filter((e) => e.idempotencyKey !== null && !claimedHere.has(e.id)).map((e) => e.idempotencyKey!);
    // The claims this statement waited on committed before it ended, so they are visible now.
    const stored = others.length > 0 ? await findStoredIds(pool, tenant, others) : new Map<string, string>();
    return events.map((e) => (e.idempotencyKey === null || claimedHere.has(e.id) ? e.id : (stored.get(e.idempotencyKey) ?? e.id)));
  }

  return {
    async enqueue(tenant, priority, receivedAt, events) {
      if (events.every((e) => e.idempotencyKey === null)) {
        await guarded(() => pool.query(INSERT_ENTRY, [events.length, encodeEntry(tenant, priority, receivedAt, events)]));
        return events.map((e) => e.id);
      }
      const { prefix, suffix } = entryHeader(tenant, priority, receivedAt);
      const rows = entryRows(tenant, priority, receivedAt, events);
      const ids = events.map((e) => e.id);
      const keys = events.map((e) => e.idempotencyKey);
      const result = await guarded(() => pool.query<{ id: string }>(ENQUEUE_KEYED, [tenant, receivedAt, ids, keys, rows, prefix, suffix]));
      return answers(tenant, events, new Set(result.rows.map((r) => r.id)));
    },
    async afterDirectWrite(tenant, events) {
      const keys = events.filter((e) => e.idempotencyKey !== null).map((e) => e.idempotencyKey!);
      if (keys.length === 0) return events.map((e) => e.id);
      try {
        const stored = await findStoredIds(pool, tenant, keys);
        return events.map((e) => (e.idempotencyKey === null ? e.id : (stored.get(e.idempotencyKey) ?? e.id)));
      } catch (err) {
        // The events are stored: answering 503 would be false. Only a repeated key's answer can be off.
        log.error({ err }, 'stored critical events, but could not read back the ids stored under their idempotency keys');
        return events.map((e) => e.id);
      }
    },
  };
}
