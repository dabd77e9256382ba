import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AggregatorRegistry, Counter, Histogram, Registry } from 'prom-client';
import { FastCounter, FastHistogram } from '../lib/fast-metrics.js';
import { LATENCY_BUCKETS } from '../lib/metrics.js';

const OBSERVATIONS = [0.0001, 0.0005, 0.0007, 0.003, 0.05, 0.05, 0.8, 12, 99];

function registries() {
  const [theirs, ours] = [new Registry(), new Registry()];
  for (const r of [theirs, ours]) r.setDefaultLabels({ role: 'api' });
  return { theirs, ours };
}

describe('fast counters and histograms', () => {
  it('render exactly as prom-client renders the same observations', async () => {
    const { theirs, ours } = registries();
    const options = { name: 'x_duration_seconds', help: 'help text', labelNames: ['route', 'status'] as const, buckets: LATENCY_BUCKETS };
    const reference = new Histogram({ ...options, labelNames: [...options.labelNames], registers: [theirs] });
    const fast = new FastHistogram({ ...options, registers: [ours] });
    const plainReference = new Histogram({ name: 'x_events', help: 'sizes', buckets: [1, 10, 100], registers: [theirs] });
    const plainFast = new FastHistogram({ name: 'x_events', help: 'sizes', buckets: [1, 10, 100], registers: [ours] });
    const counterReference = new Counter({ name: 'x_total', help: 'count', labelNames: ['priority'], registers: [theirs] });
    const counterFast = new FastCounter({ name: 'x_total', help: 'count', labelNames: ['priority'], registers: [ours] });
    for (const v of OBSERVATIONS) {
      reference.observe({ route: '/v1/events', status: '202' }, v);
      fast.observe({ route: '/v1/events', status: '202' }, v);
      reference.observe({ route: '/healthz', status: '200' }, v / 10);
      fast.observe({ route: '/healthz', status: '200' }, v / 10);
      plainReference.observe(v * 10);
      plainFast.observe(v * 10);
      counterReference.inc({ priority: 'low' }, 3);
      counterFast.inc({ priority: 'low' }, 3);
    }
    counterReference.inc({ priority: 'critical' });
    counterFast.inc({ priority: 'critical' });
    assert.equal(await ours.metrics(), await theirs.metrics());
  });

  it('sum across cluster processes like prom-client metrics', async () => {
    const perProcess = await Promise.all(
      [1, 2].map(async (n) => {
        const registry = new Registry();
        const h = new FastHistogram({ name: 'y_seconds', help: 'h', labelNames: ['route'], buckets: [0.1, 1], registers: [registry] });
        const c = new FastCounter({ name: 'y_total', help: 'c', registers: [registry] });
        for (let i = 0; i < n; i++) h.observe({ route: '/v1/events' }, 0.5);
        c.inc(undefined, n);
        return registry.getMetricsAsJSON();
      }),
    );
    const text = await AggregatorRegistry.aggregate(perProcess).metrics();
    assert.match(text, /^y_seconds_bucket\{le="0\.1",route="\/v1\/events"\} 0$/m);
    assert.match(text, /^y_seconds_bucket\{le="1",route="\/v1\/events"\} 3$/m);
    assert.match(text, /^y_seconds_count\{route="\/v1\/events"\} 3$/m);
    assert.match(text, /^y_total 3$/m);
  });

  it('refuse a missing label, a non-finite observation and a negative increment', () => {
    const registry = new Registry();
    const h = new FastHistogram<'route'>({ name: 'z_seconds', help: 'h', labelNames: ['route'], buckets: [1], registers: [registry] });
    const c = new FastCounter({ name: 'z_total', help: 'c', registers: [registry] });
    assert.throws(() => h.observe({} as { route: string }, 1), /label "route" is missing/);
    assert.throws(() => h.observe({ route: '/' }, Number.NaN), /not a finite number/);
    assert.throws(() => c.inc(undefined, -1), /only goes up/);
  });
});
