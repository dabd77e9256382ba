import { Redis, type RedisOptions } from 'ioredis';

export type { Redis };

/**
 * A Redis client for request-path writes: auto-pipelining batches concurrent XADDs into one round trip,
 * and commands fail fast while disconnected (the API answers 503) instead of queueing without bound.
 */
export function createRedis(url: string, options: RedisOptions = {}): Redis {
  const client = new Redis(url, {
    enableAutoPipelining: true,
    maxRetriesPerRequest: 1,
    connectTimeout: 5000,
    retryStrategy: (attempt) => Math.min(attempt * 100, 2000),
    lazyConnect: false,
    ...options,
  });
  // Connection errors are reported through the commands that fail; an unhandled 'error' would crash.
  client.on('error', () => {});
  return client;
}
