// A mergeable latency histogram for the load generator, on the same log-linear buckets as the API's sliding
// window (lib/latency-window.ts): ≤ 6.25 % relative error, O(1) recording, percentiles computed on read.
import { BUCKETS, bucketOf, percentilesOf, type WindowSnapshot } from '../lib/latency-window.js';

/** Percentiles in milliseconds, and how many samples they summarise. */
export type Percentiles = WindowSnapshot;

/** A histogram of latencies in milliseconds. */
export interface Histogram {
  record(ms: number): void;
  /** Adds every sample of `other`. */
  add(other: Histogram): void;
  readonly count: number;
  readonly counts: Float64Array;
  percentiles(): Percentiles;
}

/** An empty histogram. */
export function createHistogram(): Histogram {
  const counts = new Float64Array(BUCKETS);
  let count = 0;
  return {
    counts,
    get count() {
      return count;
    },
    record(ms) {
      counts[bucketOf(ms * 1000)]!++;
      count++;
    },
    add(other) {
      for (let b = 0; b < BUCKETS; b++) counts[b]! += other.counts[b]!;
      count += other.count;
    },
    percentiles: () => percentilesOf(counts, count),
  };
}
