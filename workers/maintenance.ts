import type { Config } from '../lib/config.js';
import type { Pool } from '../lib/db.js';
import type { Logger } from '../lib/logger.js';
import { MAINTENANCE_INTERVAL_MS, pruneIdempotencyKeys } from '../lib/idempotency-keys.js';
import { dropExpiredPartitions, ensurePartitions } from '../lib/partitions.js';
import { foldRollups, rollUp, type RollUpResult } from '../lib/rollup-maintenance.js';
import type { RollupTask, WorkerMetrics } from './worker-metrics.js';

/**
 * Periodic housekeeping: partitions ahead, expired partitions dropped, old idempotency keys forgotten; and, on
 * shorter timers, the fold of pending minute deltas into the minute rollups and the roll-up of minute rollups
 * into the coarser levels.
 */
export interface Maintenance {
  start(): Promise<void>;
  /** One pass now (also what the timer runs). */
  runOnce(): Promise<{ created: string[]; dropped: string[]; keysPruned: number }>;
  /** One roll-up pass now (also what the roll-up timer runs). */
  rollUpOnce(): Promise<RollUpResult>;
  /** One fold now (also what the fold timer runs): how many pending rows it folded. */
  foldOnce(): Promise<number>;
  close(): Promise<void>;
}

/** A task run every `ms`, never twice at once: a run still going when the timer fires again is not queued behind. */
function periodic(run: () => Promise<unknown>, onError: (err: unknown) => void) {
  let timer: NodeJS.Timeout | undefined;
  let current: Promise<unknown> = Promise.resolve();
  let busy = false;
  const tick = () => {
    if (busy) return current;
    busy = true;
    current = run()
      .catch(onError)
      .finally(() => {
        busy = false;
      });
    return current;
  };
  return {
    tick,
    every(ms: number) {
      timer = setInterval(() => void tick(), ms);
      timer.unref();
    },
    async stop() {
      clearInterval(timer);
      await current;
    },
  };
}

/**
 * Creates the maintenance loop; the first passes run at start, then every `intervalMs`, `rollupIntervalMs` and
 * `foldIntervalMs`.
 */
export function createMaintenance(deps: {
  config: Config;
  pool: Pool;
  logger: Logger;
  intervalMs?: number;
  rollupIntervalMs?: number;
  foldIntervalMs?: number;
  /** Where the fold and the roll-up record their outcomes (absent in tests that do not read them). */
  metrics?: Pick<WorkerMetrics, 'noteRollupTask'>;
}): Maintenance {
  const { config, pool } = deps;
  const log = deps.logger.child({ scope: 'maintenance' });
  const intervalMs = deps.intervalMs ?? MAINTENANCE_INTERVAL_MS;
  const rollupIntervalMs = deps.rollupIntervalMs ?? config.rollupIntervalMs;
  const foldIntervalMs = deps.foldIntervalMs ?? config.rollupFoldIntervalMs;
  let closing: Promise<void> | undefined;

  async function runOnce() {
    const created = await ensurePartitions(pool, config);
    const dropped = await dropExpiredPartitions(pool, config);
    const keysPruned = await pruneIdempotencyKeys(pool, config.dedupWindowHours);
    if (created.length || dropped.length || keysPruned) log.info({ created, dropped, keysPruned }, 'maintenance pass');
    return { created, dropped, keysPruned };
  }

  /** Runs one fold or roll-up and records its outcome, failures included (then rethrown to the caller). */
  async function recorded<T>(task: RollupTask, run: () => Promise<T>, detail: (result: T) => { watermark?: Date; folded?: number }) {
    try {
      const result = await run();
      deps.metrics?.noteRollupTask(task, { ok: true, ...detail(result) });
      return result;
    } catch (err) {
      deps.metrics?.noteRollupTask(task, { ok: false });
      throw err;
    }
  }

  async function rollUpOnce() {
    const result = await recorded(
      'rollup',
      () => rollUp(pool, config.rollupLagMs),
      (r) => ({ watermark: r.watermark }),
    );
    if (result.staleMinutes) log.debug({ staleMinutes: result.staleMinutes }, 'rolled up late events');
    return result;
  }

  const foldOnce = () =>
    recorded(
      'fold',
      () => foldRollups(pool),
      (folded) => ({ folded }),
    );

  const housekeeping = periodic(runOnce, (err) => log.error({ err }, 'maintenance pass failed'));
  const rollups = periodic(rollUpOnce, (err) => log.error({ err }, 'roll-up pass failed'));
  const folds = periodic(foldOnce, (err) => log.error({ err }, 'rollup fold failed'));

  return {
    runOnce,
    rollUpOnce,
    foldOnce,
    async start() {
      await housekeeping.tick();
      await rollups.tick();
      housekeeping.every(intervalMs);
      rollups.every(rollupIntervalMs);
      folds.every(foldIntervalMs);
    },
    close() {
      closing ??= (async () => {
        await Promise.all([housekeeping.stop(), rollups.stop(), folds.stop()]);
      })();
      return closing;
    },
  };
}
