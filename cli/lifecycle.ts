import type { Logger } from '../lib/logger.js';

/**
 * Runs `shutdown` once on the first SIGTERM or SIGINT, then exits 0 (1 if it threw). A second signal while
 * shutting down exits at once, for an operator who really means it.
 */
export function exitOnSignal(logger: Logger, shutdown: () => Promise<void>): void {
  let shuttingDown = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (shuttingDown) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    shuttingDown = true;
    logger.info({ signal }, 'shutting down');
    shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

/** Waits `ms`, for restart backoffs. */
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Restart delays for a crashing child: 0.5 s doubling to 30 s, back to the start after a minute of good health. */
export function restartBackoff(): { next(uptimeMs: number): number } {
  let delay = 500;
  return {
    next(uptimeMs) {
      if (uptimeMs > 60_000) delay = 500;
      const current = delay;
      delay = Math.min(delay * 2, 30_000);
      return current;
    },
  };
}
