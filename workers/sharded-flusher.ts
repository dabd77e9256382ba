import { streamShards } from '../lib/shards.js';
import { createFlusher, type Flusher, type FlusherDeps } from './flusher.js';

/**
 * The flush worker over every stream shard: one blocking reader per shard (one XREADGROUP cannot span slots on a
 * cluster), the same consumer group name on every shard's stream, each shard's own reclaim and dead-letter stream,
 * and one buffer whose batches hold entries of every shard, written to Postgres at once (see createFlusher).
 */
export function createShardedFlusher(deps: FlusherDeps): Flusher {
  return createFlusher({ ...deps, shards: streamShards(deps.config) });
}
