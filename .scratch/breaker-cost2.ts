import { Registry } from 'prom-client';
import { createBreaker } from '../lib/breaker.js';
import { createLogger } from '../lib/logger.js';
import CircuitBreaker from 'opossum';
const N = 300_000;
const op = () => Promise.resolve('1-0');
async function bench(name: string, f: () => Promise<unknown>) {
  for (let i = 0; i < 50_000; i++) await f();
  const t = performance.now();
  for (let i = 0; i < N; i++) await f();
  console.log(name, ((performance.now() - t) * 1e6 / N).toFixed(0), 'ns');
}
const b0 = createBreaker({ name: 'x', registry: new Registry(), logger: createLogger('silent', 'x'), timeoutMs: 0, resetTimeoutMs: 5000, capacity: 2000 });
await bench('ours, no timeout', () => b0.fire(op));
const raw = new CircuitBreaker(op, { timeout: false, rollingPercentilesEnabled: false, enableSnapshots: false, capacity: 2000 });
await bench('opossum raw', () => raw.fire());
const raw2 = new CircuitBreaker(op, { timeout: false, rollingPercentilesEnabled: false, enableSnapshots: false });
await bench('opossum raw no capacity', () => raw2.fire());
process.exit(0);
