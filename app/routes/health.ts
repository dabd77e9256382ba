import type { Middleware } from 'koa';
import type { Pool } from '../../lib/db.js';
import { apiError } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import { migrationsApplied } from '../../lib/migrate.js';
import type { Redis } from '../../lib/redis.js';

const CHECK_TIMEOUT_MS = 2000;

/** What /readyz says of a dependency: a word, never an error message (those name hosts, ports and users). */
type DependencyCheck = 'ok' | 'unreachable' | 'timeout';

class CheckTimeout extends Error {
  constructor(what: string) {
    super(`${what} did not answer within ${CHECK_TIMEOUT_MS} ms`);
    this.name = 'CheckTimeout';
  }
}

function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CheckTimeout(what)), CHECK_TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function verdict(result: PromiseSettledResult<unknown>): DependencyCheck {
  if (result.status === 'fulfilled') return 'ok';
  return result.reason instanceof CheckTimeout ? 'timeout' : 'unreachable';
}

/** GET /healthz: the process is alive and serving. */
export function healthz(): Middleware {
  return (ctx) => {
    ctx.body = { status: 'ok' };
  };
}

/**
 * GET /readyz: Postgres and Redis answer and every migration is applied; 503 `not_ready` otherwise, naming the
 * failed checks. Why a check failed goes to the log (once per change), not to whoever can reach the port.
 * Without a Redis (QUEUE=postgres) there is no Redis check: the queue is Postgres, already checked.
 */
export function readyz(pool: Pool, redis: Redis | undefined, latestMigration: number, logger: Logger): Middleware {
  const log = logger.child({ scope: 'readyz' });
  let lastFailed = '';
  return async (ctx) => {
    const [postgres, queue] = await Promise.allSettled([
      withTimeout(migrationsApplied(pool, latestMigration), 'postgres'),
      redis ? withTimeout(redis.ping(), 'redis') : Promise.resolve(),
    ]);
    const checks: Record<string, string> = {
      postgres: verdict(postgres),
      migrations: postgres.status === 'fulfilled' ? (postgres.value ? 'ok' : 'pending') : 'unknown',
    };
    if (redis) checks.redis = verdict(queue);
    const failed = Object.entries(checks)
      .filter(([, check]) => check !== 'ok')
      .map(([name]) => name);
    if (failed.join() !== lastFailed) {
      lastFailed = failed.join();
      const reasons = {
        postgres: postgres.status === 'rejected' ? (postgres.reason as unknown) : undefined,
        redis: queue.status === 'rejected' ? (queue.reason as unknown) : undefined,
      };
      if (failed.length > 0) log.warn({ checks, reasons }, 'not ready');
      else log.info({ checks }, 'ready again');
    }
    if (failed.length > 0) throw apiError('not_ready', `not ready: ${failed.join(', ')}`, checks);
    ctx.body = { status: 'ready', checks };
  };
}
