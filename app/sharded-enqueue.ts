import { retryClusterRedirects } from '../lib/cluster-redirects.js';
import type { Config } from '../lib/config.js';
import type { Redis } from '../lib/redis.js';
import { shardIndexOf, streamShards } from '../lib/shards.js';
import type { Enqueuer } from '../lib/queue.js';
import { createEnqueuer, type EnqueueDeps } from './enqueue.js';

/**
 * One enqueuer per stream shard (each with its own stream key, marker and dedup keys under the shard's hash
 * tag), and a request goes to its tenant's shard. A tenant's dedup keys therefore live in the slot of the stream
 * its requests are added to, which the enqueue script needs (its keys must share a slot on a cluster).
 */
export function createShardedEnqueuer(deps: EnqueueDeps): Enqueuer {
  const shards = streamShards(deps.config).map((shard) =>
    createEnqueuer({ ...deps, config: { ...deps.config, streamKey: shard.streamKey } }),
  );
  const of = (tenant: string) => shards[shardIndexOf(tenant, shards.length)]!;
  return {
    enqueue: (tenant, priority, receivedAt, events) => of(tenant).enqueue(tenant, priority, receivedAt, events),
    afterDirectWrite: (tenant, events) => of(tenant).afterDirectWrite(tenant, events),
  };
}

/** Thrown when fewer replicas than REDIS_MIN_REPLICAS_ACK confirmed a write in time. */
export class ReplicaAckError extends Error {
  constructor(
    readonly wanted: number,
    readonly confirmed: number,
  ) {
    super(`${confirmed} of ${wanted} replicas confirmed the write in time`);
    this.name = 'ReplicaAckError';
  }
}

/**
 * Wraps an enqueuer so that a request counts as accepted only once `REDIS_MIN_REPLICAS_ACK` replicas have it:
 * WAIT after the write, sent on the connection that wrote (a pipeline keyed on the tenant's stream routes to that
 * shard's master on a cluster; WAIT covers every earlier write of that connection). Fewer replicas in time
 * throws, and the route answers 503 like any failed write (the entry may still be flushed: retry with
 * idempotency keys to be safe).
 */
export function withReplicaAcks(inner: Enqueuer, redis: Redis, config: Config): Enqueuer {
  const wanted = config.redisMinReplicasAck;
  if (wanted === 0) return inner;
  const shards = streamShards(config);
  // Below the client's command timeout, so that WAIT's own answer (how many confirmed) arrives.
  const waitMs = Math.max(1, Math.floor(config.redisWriteTimeoutMs * 0.8));
  async function confirm(tenant: string): Promise<void> {
    const key = shards[shardIndexOf(tenant, shards.length)]!.streamKey;
    // EXISTS only routes the pipeline to the shard's master; when it was refused (the slot moved), WAIT was answered
    // by a node that is not the master the write went to, so its count means nothing: ask the right one again.
    const replies = await retryClusterRedirects(async () => {
      const answers = await redis.pipeline().exists(key).wait(wanted, waitMs).exec();
      if (answers?.[0]?.[0]) throw answers[0][0];
      return answers;
    }, config.redisWriteTimeoutMs);
    const [err, confirmed] = replies?.[1] ?? [new Error('no reply to WAIT'), 0];
    if (err) throw err;
    if (Number(confirmed) < wanted) throw new ReplicaAckError(wanted, Number(confirmed));
  }
  return {
    async enqueue(tenant, priority, receivedAt, events) {
      const ids = await inner.enqueue(tenant, priority, receivedAt, events);
      await confirm(tenant);
      return ids;
    },
    afterDirectWrite: (tenant, events) => inner.afterDirectWrite(tenant, events),
  };
}
