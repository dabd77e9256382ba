import autocannon from 'autocannon';
import { createApiKey } from '../lib/api-keys.js';
import { createBenchEnv, startFloodgate } from '../loadtest/bench-env.js';
const bench = await createBenchEnv('shedcost', 'postgres://postgres@127.0.0.1:5432/floodgate_shedcost', { API_PROCESSES: '1' });
const { key } = await createApiKey(bench.pool, { tenant: 'x' });
const fg = await startFloodgate(bench, { env: { SHED_MODE: 'off' } });
const body = JSON.stringify({ type: 'page_view', source: 'web', data: { path: '/a/b', ms: 12, tags: ['x', 'y'] } });
for (const [name, prio] of [['admit', 'low'], ['refused-after-auth', 'bogus'], ['admit', 'low'], ['refused-after-auth', 'bogus']] as const) {
  const r = await autocannon({ url: `${fg.url}/v1/events`, method: 'POST', body, connections: 50, duration: 6, headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, 'x-priority': prio } });
  console.log(name, Math.round(r.requests.average), 'rps', 'p99', r.latency.p99, Object.keys(r.statusCodeStats).join(','));
}
await fg.stop(); await bench.close(); process.exit(0);
