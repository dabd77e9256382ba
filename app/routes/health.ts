import type { Middleware } from 'koa';
import type { Pool } from '../../lib/db.js';
import { apiError } from '../../lib/errors.js';
import { migrationsApplied } from '../../lib/migrate.js';
import type { Redis } from '../../lib/redis.js';

const CHECK_TIMEOUT_MS = 2000;

function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** GET /healthz: the process is alive and serving. */
export function healthz(): Middleware {
  return (ctx) => {
    ctx.body = { status: 'ok' };
  };
}

/** GET /readyz: Postgres and Redis answer and every migration is applied; 503 `not_ready` otherwise. */
export function readyz(pool: Pool, redis: Redis, latestMigration: number): Middleware {
  return async (ctx) => {
    const [postgres, queue] = await Promise.allSettled([
      withTimeout(migrationsApplied(pool, latestMigration), 'postgres'),
      withTimeout(redis.ping(), 'redis'),
    ]);
    const checks = {
      postgres: postgres.status === 'fulfilled' ? 'ok' : `unreachable: ${(postgres.reason as Error).message}`,
      migrations: postgres.status === 'fulfilled' ? (postgres.value ? 'ok' : 'pending') : 'unknown',
      redis: queue.status === 'fulfilled' ? 'ok' : `unreachable: ${(queue.reason as Error).message}`,
    };
    if (Object.values(checks).some((c) => c !== 'ok')) throw apiError('not_ready', 'not ready', checks);
    ctx.body = { status: 'ready', checks };
  };
}
