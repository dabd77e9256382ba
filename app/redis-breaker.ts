import type { Registry } from 'prom-client';
import { createDependencyBreaker, type Breaker } from '../lib/breaker.js';
import type { Config } from '../lib/config.js';
import type { Logger } from '../lib/logger.js';

/**
 * The breaker around the API's XADD (`redis_write`). Its timeout is the Redis write timeout; its capacity the
 * hard in-flight limit, so it never turns away a write the shedder admitted.
 */
export function createRedisWriteBreaker(config: Config, registry: Registry, logger: Logger): Breaker {
  return createDependencyBreaker(config, { name: 'redis_write', registry, logger, timeoutMs: config.redisWriteTimeoutMs, capacity: config.shedHardMaxInFlight });
}
