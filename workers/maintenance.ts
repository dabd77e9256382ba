import type { Config } from '../lib/config.js';
import type { Pool } from '../lib/db.js';
import type { Logger } from '../lib/logger.js';
import { MAINTENANCE_INTERVAL_MS, pruneIdempotencyKeys } from '../lib/idempotency-keys.js';
import { dropExpiredPartitions, ensurePartitions } from '../lib/partitions.js';
import { rollUp, type RollUpResult } from '../lib/rollup-maintenance.js';

/**
 * Periodic housekeeping: partitions ahead, expired partitions dropped, old idempotency keys forgotten; and, on a
 * shorter timer, the roll-up of minute rollups into the coarser levels.
 */
export interface Maintenance {
  start(): Promise<void>;
  /** One pass now (also what the timer runs). */
  runOnce(): Promise<{ created: string[]; dropped: string[]; keysPruned: number }>;
  /** One roll-up pass now (also what the roll-up timer runs). */
  rollUpOnce(): Promise<RollUpResult>;
  close(): Promise<void>;
}

/** Creates the maintenance loop; the first passes run at start, then every `intervalMs` and `rollupIntervalMs`. */
export function createMaintenance(deps: {
  config: Config;
  pool: Pool;
  logger: Logger;
  intervalMs?: number;
  rollupIntervalMs?: number;
}): Maintenance {
  const { config, pool } = deps;
  const log = deps.logger.child({ scope: 'maintenance' });
  const intervalMs = deps.intervalMs ?? MAINTENANCE_INTERVAL_MS;
  const rollupIntervalMs = deps.rollupIntervalMs ?? config.rollupIntervalMs;
  let timer: NodeJS.Timeout | undefined;
  let rollupTimer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();
  let rolling: Promise<unknown> = Promise.resolve();
  let rollingNow = false;
  let closing: Promise<void> | undefined;

  async function runOnce() {
    const created = await ensurePartitions(pool, config);
    const dropped = await dropExpiredPartitions(pool, config);
    const keysPruned = await pruneIdempotencyKeys(pool, config.dedupWindowHours);
    if (created.length || dropped.length || keysPruned) log.info({ created, dropped, keysPruned }, 'maintenance pass');
    return { created, dropped, keysPruned };
  }

  async function rollUpOnce() {
    const result = await rollUp(pool, config.rollupLagMs);
    if (result.staleMinutes) log.debug({ staleMinutes: result.staleMinutes }, 'rolled up late events');
    return result;
  }

  function tick() {
    running = runOnce().catch((err: unknown) => log.error({ err }, 'maintenance pass failed'));
  }

  // A pass still running when the timer fires again (a slow database) is not queued behind: the next tick runs it.
  function rollupTick() {
    if (rollingNow) return;
    rollingNow = true;
    rolling = rollUpOnce()
      .catch((err: unknown) => log.error({ err }, 'roll-up pass failed'))
      .finally(() => {
        rollingNow = false;
      });
  }

  return {
    runOnce,
    rollUpOnce,
    async start() {
      tick();
      await running;
      rollupTick();
      await rolling;
      timer = setInterval(tick, intervalMs);
      timer.unref();
      rollupTimer = setInterval(rollupTick, rollupIntervalMs);
      rollupTimer.unref();
    },
    close() {
      closing ??= (async () => {
        clearInterval(timer);
        clearInterval(rollupTimer);
        await running;
        await rolling;
      })();
      return closing;
    },
  };
}
