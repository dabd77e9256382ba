import { performance } from 'node:perf_hooks';
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/** Buckets from 0.5 ms to 10 s, dense where an ingest API's latencies live. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * A fresh registry with the process's default metrics (CPU, RSS, heap, GC, event-loop delay p50/p99) and
 * event-loop utilisation; `role` becomes a default label so API and worker series never collide.
 */
export function createRegistry(role: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ role });
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 10 });
  let last = performance.eventLoopUtilization();
  new Gauge({
    name: 'nodejs_eventloop_utilization_ratio',
    help: 'Share of time the event loop was busy since the previous scrape.',
    registers: [registry],
    // Across cluster processes the mean is the meaningful figure (a sum of ratios is not a ratio).
    aggregator: 'average',
    collect() {
      const now = performance.eventLoopUtilization();
      this.set(performance.eventLoopUtilization(now, last).utilization);
      last = now;
    },
  });
  return registry;
}
