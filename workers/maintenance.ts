import type { Config } from '../lib/config.js';
import type { Pool } from '../lib/db.js';
import type { Logger } from '../lib/logger.js';
import { MAINTENANCE_INTERVAL_MS, pruneIdempotencyKeys } from '../lib/idempotency-keys.js';
import { dropExpiredPartitions, ensurePartitions } from '../lib/partitions.js';

/** Periodic housekeeping: partitions ahead, expired partitions dropped, old idempotency keys forgotten. */
export interface Maintenance {
  start(): Promise<void>;
  /** One pass now (also what the timer runs). */
  runOnce(): Promise<{ created: string[]; dropped: string[]; keysPruned: number }>;
  close(): Promise<void>;
}

/** Creates the maintenance loop; the first pass runs at start, then every `intervalMs`. */
export function createMaintenance(deps: { config: Config; pool: Pool; logger: Logger; intervalMs?: number }): Maintenance {
  const { config, pool } = deps;
  const log = deps.logger.child({ scope: 'maintenance' });
  const intervalMs = deps.intervalMs ?? MAINTENANCE_INTERVAL_MS;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();
  let closing: Promise<void> | undefined;

  async function runOnce() {
    const created = await ensurePartitions(pool, config);
    const dropped = await dropExpiredPartitions(pool, config);
    const keysPruned = await pruneIdempotencyKeys(pool, config.dedupWindowHours);
    if (created.length || dropped.length || keysPruned) log.info({ created, dropped, keysPruned }, 'maintenance pass');
    return { created, dropped, keysPruned };
  }

  function tick() {
    running = runOnce().catch((err: unknown) => log.error({ err }, 'maintenance pass failed'));
  }

  return {
    runOnce,
    async start() {
      tick();
      await running;
      timer = setInterval(tick, intervalMs);
      timer.unref();
    },
    close() {
      closing ??= (async () => {
        clearInterval(timer);
        await running;
      })();
      return closing;
    },
  };
}
