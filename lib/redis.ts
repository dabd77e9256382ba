import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Config } from './config.js';

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

/**
 * The queue's Redis client: the single Redis at REDIS_URL, or a Redis Cluster client when REDIS_CLUSTER_NODES
 * is set. A Cluster routes each command by its key's slot (EVALSHA and MULTI by their keys, which Floodgate
 * keeps in one slot per shard) and follows MOVED/ASK and failovers itself. It is typed as `Redis` because both
 * share ioredis's command API and the members Floodgate uses (commands, pipeline, multi, duplicate, quit,
 * disconnect, status); commands needing several slots are not used with a cluster (see docs/scaling.md).
 */
export function createQueueRedis(config: Pick<Config, 'redisUrl' | 'redisClusterNodes'>, options: RedisOptions = {}): Redis {
  if (config.redisClusterNodes.length === 0) return createRedis(config.redisUrl, options);
  const { enableAutoPipelining = true, lazyConnect = false, ...redisOptions } = options;
  const cluster = new Cluster(
    config.redisClusterNodes.map(({ host, port }) => ({ host, port })),
    {
      enableAutoPipelining,
      lazyConnect,
      // Writes go to masters; reading replicas would see the stream behind its master.
      scaleReads: 'master',
      clusterRetryStrategy: (attempt) => Math.min(attempt * 100, 2000),
      // During a failover the slots are briefly unserved: retry for about a replica's promotion time.
      retryDelayOnFailover: 200,
      retryDelayOnClusterDown: 200,
      // An auto-pipelined batch spanning slots is not retried on MOVED unless every error in it agrees, so after a
      // failover such batches (the backlog's XLENs over shards) could keep failing on a stale slot map: refresh it.
      slotsRefreshInterval: 2000,
      redisOptions: { maxRetriesPerRequest: 1, connectTimeout: 5000, ...redisOptions },
    },
  );
  cluster.on('error', () => {});
  return cluster as unknown as Redis;
}
