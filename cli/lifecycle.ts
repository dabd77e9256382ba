import cluster from 'node:cluster';
import type { Logger } from '../lib/logger.js';

/**
 * Whether a parent Floodgate process (the `start` supervisor or the cluster primary) will tell this one when to
 * stop. Both talk to their children over an IPC channel, so its presence is the tell.
 */
export function isSupervised(): boolean {
  return cluster.isWorker || process.channel !== undefined;
}

/** What to do on a stop request, and on an operator's "I really mean it". */
export interface ShutdownHooks {
  /** The graceful path: stop accepting, finish what is in hand, close connections. */
  readonly shutdown: () => Promise<void>;
  /** Runs before exiting at once on a repeated signal, e.g. a supervisor SIGKILLs its children. */
  readonly force?: () => void;
}

/**
 * Runs `shutdown` once on SIGTERM or SIGINT, then exits 0 (1 if it threw).
 *
 * A Ctrl-C reaches every process of the terminal's process group at once, and the supervisor then forwards a
 * SIGTERM in its own order; so a supervised process ignores SIGINT (the supervisor decides the order: API
 * first, the worker's final flush last) and a repeat of the *same* signal, not merely a second one, means
 * "exit now". A supervised process whose parent vanished (its IPC channel closed) shuts down too.
 */
export function onShutdown(logger: Logger, hooks: ShutdownHooks): void {
  const supervised = isSupervised();
  let first: string | undefined;
  const begin = (reason: string) => {
    if (first !== undefined) {
      if (reason !== first) return;
      logger.warn({ reason }, 'asked again: exiting now');
      hooks.force?.();
      process.exit(1);
    }
    first = reason;
    logger.info({ reason }, 'shutting down');
    hooks.shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => begin('SIGTERM'));
  process.on('SIGINT', () => (supervised ? logger.debug('SIGINT ignored: the supervisor forwards SIGTERM in order') : begin('SIGINT')));
  // Cluster workers are excluded: Node's cluster module already exits them when the primary goes away.
  if (supervised && !cluster.isWorker) process.on('disconnect', () => begin('supervisor gone'));
}

/**
 * Restart delays for a crashing child: 0.5 s doubling to 30 s, so a child that cannot start (port taken,
 * database down) is retried without a hot loop; back to 0.5 s once a child has stayed up for a minute.
 */
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
