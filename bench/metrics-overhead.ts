// `npm run bench:metrics`: what the Prometheus instrumentation costs, measured in one run.
// Two API processes of the same build run side by side, one with METRICS_ENABLED=true (its /metrics scraped
// every second, 15x more often than prometheus.yml does) and one with METRICS_ENABLED=false. They are hammered
// in alternating rounds (on, off, on, off, …) with the same single-event body, so machine drift hits both
// alike; the figure is the median over rounds of (req/s with metrics) / (req/s without). Aim: ≥ 0.95.
// On a shared 2-core machine throughput swings ±20 % between runs, so each run also reports the API process's
// own CPU time per request (from /proc/<pid>/stat), which the load generator's share of the machine moves far less.
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { createApiKey } from '../lib/api-keys.js';
import { createBenchEnv, startFloodgate, type StartedFloodgate } from './bench-env.js';
import { processCpuMicros } from './cpu.js';
import { generateEvent, seededRandom } from '../loadtest/events.js';
import { REPO_ROOT } from './processes.js';

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '8' },
    connections: { type: 'string', default: '50' },
    rounds: { type: 'string', default: '3' },
    out: { type: 'string', default: `${REPO_ROOT}bench/reports` },
  },
});
const duration = Number(args.duration);
const connections = Number(args.connections);
const rounds = Number(args.rounds);

interface Sample {
  readonly round: number;
  readonly metrics: 'on' | 'off';
  readonly requestsPerSec: number;
  readonly p50: number;
  readonly p99: number;
  readonly non2xx: number;
  /** CPU time (user + system) the API process spent per request answered, in µs. */
  readonly cpuMicrosPerRequest: number;
}

// Shedding stays on (enforce, the default) in both: it is part of the build being measured, not of metrics.
const bench = await createBenchEnv(
  'bench-metrics',
  process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/floodgate_bench',
  { API_PROCESSES: '1' },
);
const { key } = await createApiKey(bench.pool, { tenant: 'bench-metrics' });
const body = JSON.stringify(generateEvent(seededRandom(1), 0));
const headers = { 'content-type': 'application/json', authorization: `Bearer ${key}` };

console.log(
  `floodgate metrics overhead — ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}`,
);
console.log(`${connections} connections, ${duration} s per run, ${rounds} rounds of metrics on / off, single-event POSTs\n`);

// No worker: the stream is emptied between runs, and the worker's work is not what is measured.
const on = await startFloodgate(bench, { worker: false, env: { METRICS_ENABLED: 'true' } });
const off = await startFloodgate(bench, { worker: false, env: { METRICS_ENABLED: 'false' } });
const samples: Sample[] = [];
let scrapes = 0;
const scraper = setInterval(() => {
  fetch(on.metricsUrl)
    .then((res) => res.text())
    .then(() => scrapes++)
    .catch(() => {});
}, 1000);

async function hammer(api: StartedFloodgate, warmUp: boolean): Promise<{ result: autocannon.Result; cpuMicrosPerRequest: number }> {
  const url = `${api.url}/v1/events`;
  if (warmUp) await autocannon({ url, method: 'POST', body, headers, connections, duration: 2 });
  const pid = api.apiPid;
  const before = processCpuMicros(pid) ?? 0;
  const result = await autocannon({ url, method: 'POST', body, headers, connections, duration });
  const spent = (processCpuMicros(pid) ?? 0) - before;
  return { result, cpuMicrosPerRequest: spent / Math.max(1, result.requests.total) };
}

try {
  for (let round = 1; round <= rounds; round++) {
    // Alternate which goes first so neither always runs on a warmer (or more tired) machine.
    const order: ('on' | 'off')[] = round % 2 === 1 ? ['on', 'off'] : ['off', 'on'];
    for (const mode of order) {
      const { result, cpuMicrosPerRequest } = await hammer(mode === 'on' ? on : off, round === 1);
      const sample: Sample = {
        round,
        metrics: mode,
        requestsPerSec: result.requests.average,
        p50: result.latency.p50,
        p99: result.latency.p99,
        non2xx: result.non2xx,
        cpuMicrosPerRequest,
      };
      samples.push(sample);
      console.log(
        `round ${round} metrics ${mode.padEnd(3)} ${sample.requestsPerSec.toFixed(0).padStart(7)} req/s  ${cpuMicrosPerRequest.toFixed(1).padStart(6)} µs CPU/request  p50 ${sample.p50} ms  p99 ${sample.p99} ms  non-2xx ${sample.non2xx}`,
      );
      await bench.redis.del(bench.config.streamKey);
    }
  }
} finally {
  clearInterval(scraper);
  await Promise.all([on.stop(), off.stop()]);
  await bench.close();
}

/** Per round, f(on) / f(off), sorted, and their median. */
function roundRatios(f: (s: Sample) => number): { ratios: number[]; median: number } {
  const ratios = Array.from({ length: rounds }, (_, i) => {
    const on = samples.find((s) => s.round === i + 1 && s.metrics === 'on')!;
    const off = samples.find((s) => s.round === i + 1 && s.metrics === 'off')!;
    return f(on) / f(off);
  }).sort((a, b) => a - b);
  return { ratios, median: ratios[Math.floor(ratios.length / 2)]! };
}
const pct = (r: number) => `${(r * 100).toFixed(1)} %`;
const throughput = roundRatios((s) => s.requestsPerSec);
// Throughput a core can give is inversely proportional to CPU per request: off/on is the comparable ratio.
const cpu = roundRatios((s) => 1 / s.cpuMicrosPerRequest);
console.log(
  `\nthroughput with metrics / without: median ${pct(throughput.median)} (rounds: ${throughput.ratios.map(pct).join(', ')})\n` +
    `CPU-bound throughput (CPU per request without / with): median ${pct(cpu.median)} (rounds: ${cpu.ratios.map(pct).join(', ')})\n` +
    `cost by CPU ${((1 - cpu.median) * 100).toFixed(1)} % — aim ≤ 5 %; ${scrapes} scrapes of /metrics during the run`,
);

await mkdir(args.out, { recursive: true });
const file = `${args.out}/metrics-overhead-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
await writeFile(
  file,
  JSON.stringify(
    {
      machine: { cpus: cpus().length, model: cpus()[0]?.model, memGiB: totalmem() / 2 ** 30, node: process.version },
      connections,
      duration,
      rounds,
      samples,
      throughput,
      cpu,
      scrapes,
    },
    null,
    2,
  ),
);
console.log(`report: ${file}`);
process.exit(0);
