import { streamShards } from '../lib/shards.js';
import { createFlusher, type Flusher, type FlusherDeps, type FlusherStats } from './flusher.js';

/**
 * The flush worker over every stream shard: one flusher per shard (its own blocking reader, consumer group of the
 * same name on that shard's stream, reclaim and dead-letter stream), since one XREADGROUP cannot span slots on a
 * cluster. Each writes its own batches; the stats and the buffered-events gauge are their sums.
 */
export function createShardedFlusher(deps: FlusherDeps): Flusher {
  const held: number[] = [];
  const report = () => deps.metrics?.bufferedEvents.set(held.reduce((a, b) => a + b, 0));
  const flushers = streamShards(deps.config).map((shard) => {
    held[shard.index] = 0;
    return createFlusher({
      ...deps,
      shard,
      reportBuffered: (events) => {
        held[shard.index] = events;
        report();
      },
    });
  });
  const sum = (field: keyof FlusherStats) => flushers.reduce((n, f) => n + f.stats[field], 0);
  const stats = {
    get entriesRead() {
      return sum('entriesRead');
    },
    get entriesReclaimed() {
      return sum('entriesReclaimed');
    },
    get eventsWritten() {
      return sum('eventsWritten');
    },
    get duplicatesDropped() {
      return sum('duplicatesDropped');
    },
    get flushes() {
      return sum('flushes');
    },
    get flushErrors() {
      return sum('flushErrors');
    },
    get deadLettered() {
      return sum('deadLettered');
    },
  } satisfies FlusherStats;
  let closing: Promise<void> | undefined;
  return {
    stats,
    buffered: () => flushers.reduce((n, f) => n + f.buffered(), 0),
    async start() {
      await Promise.all(flushers.map((f) => f.start()));
    },
    close() {
      // Every shard drains even when another fails to.
      closing ??= Promise.allSettled(flushers.map((f) => f.close())).then((results) => {
        const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
      });
      return closing;
    },
  };
}
