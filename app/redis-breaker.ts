import type { Registry } from 'prom-client';
import { createDependencyBreaker, type Breaker } from '../lib/breaker.js';
import { isSlotMoving } from '../lib/cluster-redirects.js';
import type { Config } from '../lib/config.js';
import type { Logger } from '../lib/logger.js';

/**
 * The breaker around the API's XADD (`redis_write`). It sets no timeout of its own: the API's Redis client
 * already rejects every command after REDIS_WRITE_TIMEOUT_MS (ioredis `commandTimeout`, queued commands
 * included), and that rejection counts as a failure. Its capacity is the hard in-flight limit, so it never
 * turns away a write the shedder admitted.
 */
export function createRedisWriteBreaker(config: Config, registry: Registry, logger: Logger): Breaker {
  return createDependencyBreaker(config, {
    name: 'redis_write',
    registry,
    logger,
    timeoutMs: 0,
    capacity: config.shedHardMaxInFlight,
    // A slot still moving after REDIS_WRITE_TIMEOUT_MS fails its own shard's keyed writes, not Redis as a whole.
    isCallerError: isSlotMoving,
  });
}

/**
 * The breaker around the API's queue write: `redis_write` above, or with QUEUE=postgres `pg_queue_write`, the
 * insert into event_queue (no timeout of its own either: DB_WRITE_TIMEOUT_MS bounds the statement).
 */
export function createQueueWriteBreaker(config: Config, registry: Registry, logger: Logger): Breaker {
  if (config.queue === 'redis') return createRedisWriteBreaker(config, registry, logger);
  return createDependencyBreaker(config, { name: 'pg_queue_write', registry, logger, timeoutMs: 0, capacity: config.shedHardMaxInFlight });
}
