import { createApiKey } from '../lib/api-keys.js';
import { createBenchEnv, startFloodgate } from '../loadtest/bench-env.js';
import { runScenario } from '../loadtest/run-scenario.js';
const rate = Number(process.argv[2] ?? 6000);
const extraEnv = Object.fromEntries((process.argv[3] ?? '').split(',').filter(Boolean).map((kv) => kv.split('=')));
const bench = await createBenchEnv('shedwatch', 'postgres://postgres@127.0.0.1:5432/floodgate_shedwatch', { API_PROCESSES: '1' });
const { key } = await createApiKey(bench.pool, { tenant: 'x' });
const { key: admin } = await createApiKey(bench.pool, { tenant: 'ops', isAdmin: true });
const fg = await startFloodgate(bench, { env: { SHED_MODE: 'enforce', ...extraEnv } });
const timer = setInterval(async () => {
  const l = await (await fetch(`${fg.url}/v1/admin/load`, { headers: { authorization: `Bearer ${admin}` } })).json() as any;
  console.error(`ADMIN level ${l.controller.level.toFixed(2)} pressure ${l.controller.pressure.toFixed(2)} p99 ${l.signals.p99Ms.toFixed(1)} n ${l.signals.samples} eld ${l.signals.eventLoopDelayP99Ms.toFixed(1)} backlog ${l.signals.backlogEntries} inflight ${l.signals.inFlight} floor ${l.controller.backlogFloor}`);
}, 1000);
const { report } = await runScenario({ scenario: 'steady', url: fg.url, key, seed: 1, rate, duration: 12, connections: 500, mix: [{ priority: 'critical', share: 0.2 }, { priority: 'normal', share: 0.3 }, { priority: 'low', share: 0.5 }], databaseUrl: null, timeoutSeconds: 5, sloP99Ms: 50, drainTimeoutMs: 60000, progress: true } as any);
clearInterval(timer);
console.error(JSON.stringify(report.summary?.total ?? {}).slice(0, 300));
await fg.stop(); await bench.close(); process.exit(0);
