import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { isClusterRedirect, retryClusterRedirects } from './cluster-redirects.js';
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
  return followSlotMoves(cluster, options.commandTimeout ?? DEFAULT_SLOT_MOVE_BUDGET_MS) as unknown as Redis;
}

/** How long a refused write is sent again while its slot moves, when the caller set no command timeout. */
const DEFAULT_SLOT_MOVE_BUDGET_MS = 2000;

/** The queue writes of the API's request path: the XADD and the enqueue script. */
const RESENT_ALONE = ['xadd', 'evalsha', 'eval'] as const;

/**
 * The cluster client, with its request-path writes following slot migrations (`redis-cli --cluster reshard`)
 * to the end. ioredis follows MOVED and ASK for a command sent alone, but an auto-pipelined batch only when
 * every failed command in it failed alike and the rest only read: a write batched with writes to other slots of
 * the same master gets the redirect meant for it as its answer, for as long as the slot moves. And a script over
 * several keys (the enqueue script) is answered TRYAGAIN as long as the slot is half-moved. Such a write did
 * not run (`isClusterRedirect`); it is sent again as a pipeline of its own, which ioredis redirects, within
 * `budgetMs` (REDIS_WRITE_TIMEOUT_MS), after which the refusal is the caller's error.
 */
function followSlotMoves(cluster: Cluster, budgetMs: number): Cluster {
  const resent = new Map<string | symbol, (...args: (string | number | Buffer)[]) => Promise<unknown>>(
    RESENT_ALONE.map((name) => [
      name,
      async (...args) => {
        try {
          return await cluster.call(name, ...args);
        } catch (err) {
          if (!isClusterRedirect(err)) throw err;
          return retryClusterRedirects(async (): Promise<unknown> => {
            const replies = (await cluster.pipeline([[name, ...args]]).exec()) ?? [];
            const [error, result] = replies[0] ?? [new Error(`no reply to ${name}`), null];
            if (error) throw error;
            return result;
          }, budgetMs);
        }
      },
    ]),
  );
  return new Proxy(cluster, {
    get(target, prop) {
      const own = resent.get(prop);
      if (own) return own;
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}
