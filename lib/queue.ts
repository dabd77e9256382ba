import type { Config } from './config.js';
import type { Priority, ValidEvent } from './event-schema.js';

/** Where accepted requests wait for the flush worker (`QUEUE`). */
export type QueueKind = Config['queue'];

/**
 * The enqueue side, used by the API: puts an accepted request on the queue and says which id answers each of
 * its events (for a repeated idempotency key, the id answered first). Implemented over a Redis stream
 * (app/enqueue.ts) and over the `event_queue` table (app/pg-enqueue.ts).
 */
export interface Enqueuer {
  /** Queues the events (each new key once); resolves with the id answering each event, in order. */
  enqueue(tenant: string, priority: Priority, receivedAt: number, events: readonly ValidEvent[]): Promise<string[]>;
  /**
   * After critical events were written straight to Postgres: the id answering each (the stored one for a
   * repeated key). The Redis queue also stops vouching for misses, since it never saw these keys.
   */
  afterDirectWrite(tenant: string, events: readonly ValidEvent[]): Promise<string[]>;
}

/**
 * The backlog the shedder polls: entries accepted and not yet written, or undefined when the queue cannot be
 * asked right now (the caller keeps its last value).
 */
export type QueueDepth = () => Promise<number | undefined>;

/** The consume side, used by the worker: reads the queue, writes batches to Postgres exactly once. */
export interface QueueConsumer {
  start(): Promise<void>;
  /** Stops reading, writes what it holds (within shutdownTimeoutMs) and closes its own connections. */
  close(): Promise<void>;
  /** Events held in memory, not yet written. */
  buffered(): number;
}
