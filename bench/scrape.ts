// Reading Floodgate's Prometheus endpoints from the outside, as a benchmark does: gauges (RSS, event-loop
// delay) watched once a second, and a histogram's quantiles over an interval (time to durable).

/**
 * The value of the first series of `name` in a text exposition, or null: any series, or with `label` the one
 * whose labels include label[0]="label[1]".
 */
export function gauge(text: string, name: string, label?: readonly [string, string]): number | null {
  const labels = label ? `\\{(?:[^}]*,)?${label[0]}="${label[1]}"[^}]*\\}` : '(?:\\{[^}]*\\})?';
  const match = new RegExp(`^${name}${labels} (\\S+)$`, 'm').exec(text);
  return match ? Number(match[1]) : null;
}

/** Cumulative bucket counts of histogram `name`, by upper bound (+Inf as Infinity). */
export function histogramBuckets(text: string, name: string): Map<number, number> {
  const buckets = new Map<number, number>();
  const re = new RegExp(`^${name}_bucket\\{(?:[^}]*,)?le="([^"]+)"[^}]*\\} (\\S+)$`, 'gm');
  for (let m = re.exec(text); m; m = re.exec(text)) buckets.set(m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2]));
  return buckets;
}

/** A quantile of the observations between two scrapes of a histogram, interpolated within its bucket (like histogram_quantile). */
export function quantileBetween(before: Map<number, number>, after: Map<number, number>, q: number): number | null {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const counts = bounds.map((b) => (after.get(b) ?? 0) - (before.get(b) ?? 0));
  const total = counts.at(-1) ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  for (let i = 0; i < bounds.length; i++) {
    if (counts[i]! >= rank) {
      const upper = bounds[i]!;
      const lower = i === 0 ? 0 : bounds[i - 1]!;
      if (upper === Infinity) return lower;
      const below = i === 0 ? 0 : counts[i - 1]!;
      return lower + ((upper - lower) * (rank - below)) / Math.max(counts[i]! - below, 1e-9);
    }
  }
  return null;
}

/** GET a metrics endpoint's text. */
export async function scrape(url: string): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`${url}: ${res.status}`);
  return res.text();
}

/** What the shedding controller showed at the last scrape. */
export interface ControllerReading {
  readonly level: number | null;
  readonly normalShedProbability: number | null;
}

/** The API process's resource figures while a run goes: highest RSS and event-loop delay p99 seen. */
export interface ProcessWatch {
  /** The controller's level and normal shed probability at the latest scrape. */
  controller(): ControllerReading;
  stop(): Promise<{ maxRssMiB: number | null; maxEventLoopDelayP99Ms: number | null; samples: number }>;
}

/** Scrapes `metricsUrl` once a second for process_resident_memory_bytes, nodejs_eventloop_lag_p99_seconds and the shed level. */
export function watchProcess(metricsUrl: string): ProcessWatch {
  let maxRss: number | null = null;
  let maxLag: number | null = null;
  let samples = 0;
  let controller: ControllerReading = { level: null, normalShedProbability: null };
  let pending: Promise<void> = Promise.resolve();
  const poll = () => {
    pending = scrape(metricsUrl).then(
      (text) => {
        const rss = gauge(text, 'process_resident_memory_bytes');
        const lag = gauge(text, 'nodejs_eventloop_lag_p99_seconds');
        if (rss !== null) maxRss = Math.max(maxRss ?? 0, rss);
        if (lag !== null) maxLag = Math.max(maxLag ?? 0, lag);
        controller = {
          level: gauge(text, 'floodgate_shed_level'),
          normalShedProbability: gauge(text, 'floodgate_shed_probability', ['priority', 'normal']),
        };
        samples++;
      },
      () => {
        // A scrape lost under overload is a missing sample, not a failed benchmark.
      },
    );
  };
  const timer = setInterval(poll, 1000);
  poll();
  return {
    controller: () => controller,
    async stop() {
      clearInterval(timer);
      await pending;
      return {
        maxRssMiB: maxRss === null ? null : Math.round(maxRss / 2 ** 20),
        maxEventLoopDelayP99Ms: maxLag === null ? null : Math.round(maxLag * 10000) / 10,
        samples,
      };
    },
  };
}
