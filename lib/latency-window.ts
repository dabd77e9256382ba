/**
 * Sliding-window latency percentiles for the hot path: a ring of one-second slots, each a log-linear
 * histogram (16 sub-buckets per power of two, so ≤ 6.25 % relative error, like an HDR histogram with two
 * significant digits). Recording is O(1) with no allocation; percentiles are computed on read by summing
 * the slots of the window, which readers (the shedder's poll, /v1/admin/load) do a few times a second.
 */

const SUB_BUCKET_BITS = 4;
const SUB_BUCKETS = 1 << SUB_BUCKET_BITS;
/** Values are whole microseconds up to 2^36 µs (~19 hours); larger values land in the last bucket. */
const MAX_EXPONENT = 36;
/** Number of buckets of one log-linear histogram. */
export const BUCKETS = (MAX_EXPONENT - SUB_BUCKET_BITS + 1) * SUB_BUCKETS + SUB_BUCKETS;

/** The bucket of a value in whole microseconds. */
export function bucketOf(micros: number): number {
  const v = micros < 1 ? 0 : Math.min(Math.floor(micros), 2 ** MAX_EXPONENT - 1);
  if (v < SUB_BUCKETS) return v;
  const exponent = v < 2 ** 31 ? 31 - Math.clz32(v) : Math.floor(Math.log2(v));
  const shift = exponent - SUB_BUCKET_BITS;
  const sub = Math.floor(v / 2 ** shift) - SUB_BUCKETS;
  return (shift + 1) * SUB_BUCKETS + sub;
}

/** The largest value a bucket holds (reported percentiles are conservative upper bounds). */
function bucketUpperBound(index: number): number {
  if (index < SUB_BUCKETS) return index;
  const shift = Math.floor(index / SUB_BUCKETS) - 1;
  const sub = index % SUB_BUCKETS;
  return (SUB_BUCKETS + sub + 1) * 2 ** shift - 1;
}

export interface WindowSnapshot {
  /** Samples in the window. */
  readonly count: number;
  /** Percentiles in milliseconds (0 when the window is empty). */
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
}

/** p50/p90/p99/p99.9/max in milliseconds of a histogram's bucket counts (upper bounds, so conservative). */
export function percentilesOf(counts: ArrayLike<number>, count: number): WindowSnapshot {
  if (count === 0) return { count: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
  const targets = [0.5, 0.9, 0.99, 0.999].map((q) => Math.max(1, Math.ceil(q * count)));
  const found: number[] = [];
  let seen = 0;
  let max = 0;
  for (let b = 0; b < BUCKETS; b++) {
    const c = counts[b]!;
    if (c === 0) continue;
    seen += c;
    max = b;
    while (found.length < targets.length && seen >= targets[found.length]!) found.push(bucketUpperBound(b) / 1000);
  }
  return { count, p50: found[0]!, p90: found[1]!, p99: found[2]!, p999: found[3]!, max: bucketUpperBound(max) / 1000 };
}

export interface LatencyWindow {
  /** Records one latency in milliseconds. */
  record(ms: number): void;
  /** Percentiles over the last `seconds` (at most the ring's length). */
  snapshot(seconds: number): WindowSnapshot;
}

/** A ring of `slots` one-second histograms; `now` is injectable so tests control time. */
export function createLatencyWindow(slots = 60, now: () => number = Date.now): LatencyWindow {
  const counts = Array.from({ length: slots }, () => new Uint32Array(BUCKETS));
  const totals = new Float64Array(slots);
  const stamps = new Float64Array(slots).fill(-1);

  function slotFor(second: number): number {
    const i = second % slots;
    if (stamps[i] !== second) {
      counts[i]!.fill(0);
      totals[i] = 0;
      stamps[i] = second;
    }
    return i;
  }

  return {
    record(ms) {
      const i = slotFor(Math.floor(now() / 1000));
      counts[i]![bucketOf(ms * 1000)]!++;
      totals[i]!++;
    },
    snapshot(seconds) {
      const current = Math.floor(now() / 1000);
      const window = Math.min(seconds, slots);
      const merged = new Float64Array(BUCKETS);
      let count = 0;
      for (let s = current - window + 1; s <= current; s++) {
        const i = ((s % slots) + slots) % slots;
        if (stamps[i] !== s || totals[i] === 0) continue;
        const slot = counts[i]!;
        for (let b = 0; b < BUCKETS; b++) merged[b]! += slot[b]!;
        count += totals[i]!;
      }
      return percentilesOf(merged, count);
    },
  };
}
