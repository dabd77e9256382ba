import { Registry } from 'prom-client';
import { createApiMetrics } from '../app/metrics.js';
const m = createApiMetrics(new Registry());
const child = m.requestDuration.child({ route: '/v1/events', method: 'POST', status: '202', priority: 'normal' });
const N = 1_000_000;
function bench(name: string, f: () => void) {
  for (let i = 0; i < 100000; i++) f();
  const t = performance.now();
  for (let i = 0; i < N; i++) f();
  console.log(name, ((performance.now() - t) * 1e6 / N).toFixed(0), 'ns');
}
bench('histogram child observe', () => child.observe(0.003));
bench('gauge inc+dec', () => { m.requestsInFlight.inc(); m.requestsInFlight.dec(); });
bench('counter inc label', () => m.requestBytes.inc({ route: '/v1/events' }, 300));
bench('eventsAccepted', () => m.eventsAccepted.inc({ priority: 'normal' }, 1));
bench('batch observe', () => m.batchSize.observe(1));
bench('redis observe', () => m.redisWriteDuration.observe({ outcome: 'ok' }, 0.001));
bench('latency record', () => m.latency.record(3));
