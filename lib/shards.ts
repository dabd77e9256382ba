import type { Config } from './config.js';

/** One stream shard: the stream accepted requests wait in, and the dead-letter stream beside it. */
export interface StreamShard {
  readonly index: number;
  readonly streamKey: string;
  readonly deadLetterStreamKey: string;
}

type ShardConfig = Pick<Config, 'streamKey' | 'deadLetterStreamKey' | 'streamShards' | 'redisClusterNodes'>;

/**
 * Whether the stream keys carry a hash tag: on a cluster (even with one shard, so that a stream and the dedup
 * keys its enqueue script touches share a slot) or with several shards. A single Redis with one shard keeps the
 * plain `STREAM_KEY`, exactly as before sharding existed.
 */
export function isSharded(config: ShardConfig): boolean {
  return config.streamShards > 1 || config.redisClusterNodes.length > 0;
}

/**
 * The shards, in index order. Shard n's keys end in the hash tag `{s<n>}`: its stream, its dead-letter stream
 * and every key built under its stream key (dedup keys, marker) hash to one slot, so the enqueue script and the
 * flusher's MULTI (dead-letter XADD + XACK + XDEL) stay single-slot on a cluster.
 */
export function streamShards(config: ShardConfig): StreamShard[] {
  if (!isSharded(config)) return [{ index: 0, streamKey: config.streamKey, deadLetterStreamKey: config.deadLetterStreamKey }];
  return Array.from({ length: config.streamShards }, (_, index) => ({
    index,
    streamKey: `${config.streamKey}:{s${index}}`,
    deadLetterStreamKey: `${config.deadLetterStreamKey}:{s${index}}`,
  }));
}

/**
 * The shard a tenant's requests go to: FNV-1a of the tenant modulo the shard count. By tenant rather than round
 * robin because a tenant's idempotency keys must be looked up and claimed in the same script, hence the same
 * slot, as the XADD; a tenant's repeated key then always meets its first claim.
 */
export function shardIndexOf(tenant: string, shards: number): number {
  if (shards <= 1) return 0;
  let hash = 0x811c9dc5;
  for (let i = 0; i < tenant.length; i++) {
    hash ^= tenant.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % shards;
}
