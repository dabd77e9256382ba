import { Gauge, type Registry } from 'prom-client';
import type { Pool } from '../../lib/db.js';
import type { Logger } from '../../lib/logger.js';
import { queueBacklog } from '../../lib/pg-queue.js';

/**
 * QUEUE=postgres: the queue's backlog (entries, an upper bound: lib/pg-queue.ts) and the age of its oldest entry,
 * read at scrape time. A failed read leaves the gauges at their last values and is logged once per failure spell.
 */
export function registerPgQueueStats(options: { registry: Registry; pool: Pool; logger: Logger }): void {
  const { registry, pool } = options;
  const log = options.logger.child({ scope: 'pg-queue-stats' });
  let failing = false;
  let last = { entries: 0, oldestSeconds: 0 };
  let reading: Promise<void> | undefined;

  /** One read per scrape, shared by both gauges. */
  function read(): Promise<void> {
    reading ??= queueBacklog(pool)
      .then((backlog) => {
        last = backlog;
        if (failing) log.info('queue backlog readable again');
        failing = false;
      })
      .catch((err: unknown) => {
        if (!failing) log.warn({ err }, 'cannot read the queue backlog');
        failing = true;
      })
      .finally(() => {
        reading = undefined;
      });
    return reading;
  }

  new Gauge({
    name: 'floodgate_pg_queue_depth_entries',
    help: 'QUEUE=postgres: queued entries (accepted requests) not yet written; an upper bound (id span of the queue).',
    registers: [registry],
    async collect() {
      await read();
      this.set(last.entries);
    },
  });
  new Gauge({
    name: 'floodgate_pg_queue_oldest_age_seconds',
    help: 'QUEUE=postgres: age of the oldest queued entry (0 when the queue is empty).',
    registers: [registry],
    async collect() {
      await read();
      this.set(last.oldestSeconds);
    },
  });
}
