// `npm run bench`: the reference measurements, each next to its ceiling measured in the same run.
//   1. single-event POSTs, Floodgate vs a bare node:http server answering 202 (closed loop, 50 connections)
//   2. batches of 100 events: events/s accepted
//   3. capacity C (ramp until p99 > 50 ms or ≥ 1 % failures), then time to durable p50/p99 at ½C, read from
//      the worker's floodgate_time_to_durable_seconds histogram over the run
//   4. the worker's durable rate vs `psql \copy` into a staging table + INSERT … ON CONFLICT of the same rows
// Figures are ratios within one run: the load generator, API, Redis and Postgres share this machine's cores.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createApiKey } from '../lib/api-keys.js';
import { measureWorker } from './bench-worker.js';
import { createBenchEnv, startFloodgate } from './bench-env.js';
import { createEventSource, cyclingSource } from '../loadtest/events.js';
import { REPO_ROOT, freePort, startNode, waitForOk } from './processes.js';
import { machine } from '../loadtest/report.js';
import { runScenario } from '../loadtest/run-scenario.js';
import { runLoad } from '../loadtest/runner.js';
import { histogramBuckets, quantileBetween, scrape } from './scrape.js';

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '50' },
    'api-processes': { type: 'string', default: '1' },
    'worker-events': { type: 'string', default: '200000' },
    'slo-p99': { type: 'string', default: '50' },
    'database-url': { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/floodgate_bench' },
    out: { type: 'string', default: `${REPO_ROOT}bench/reports` },
  },
});
const duration = Number(args.duration);
const connections = Number(args.connections);
const sloP99Ms = Number(args['slo-p99']);

interface Run {
  name: string;
  requestsPerSec: number;
  eventsPerSec: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
}

/** Closed loop at `connections`: a 2 s warm-up (V8 optimises the hot path), then `duration` s measured. */
async function hammer(name: string, url: string, key: string, batchSize: number): Promise<Run> {
  const source = cyclingSource(createEventSource({ seed: 2, runId: `bench-${bench.runId}`, batchSize }), 100);
  const segment = (label: string, seconds: number) => ({
    label,
    seconds,
    rate: null,
    connections,
    mix: [{ priority: 'normal' as const, share: 1 }],
  });
  const result = await runLoad({ url, key, source, timeoutSeconds: 10, segments: [segment('warm-up', 2), segment(name, duration)] });
  const t = result.segments[1]!.total;
  const run: Run = {
    name,
    requestsPerSec: t.requestsPerSec,
    eventsPerSec: t.eventsPerSec,
    p50: Math.round(t.latency.p50 * 10) / 10,
    p99: Math.round(t.latency.p99 * 10) / 10,
    non2xx: t.requests - t.ok - t.errors - t.timeouts,
    errors: t.errors + t.timeouts,
  };
  console.log(
    `${name.padEnd(34)} ${run.requestsPerSec.toFixed(0).padStart(8)} req/s ${run.eventsPerSec.toFixed(0).padStart(9)} events/s  p50 ${run.p50} ms  p99 ${run.p99} ms  non-2xx ${run.non2xx}  errors ${run.errors}`,
  );
  return run;
}

const m = machine();
console.log(`floodgate bench — ${m.cpus} × ${m.model}, ${m.memGiB} GiB, node ${m.node}`);
console.log(`${connections} connections, ${duration} s per run, API_PROCESSES=${args['api-processes']}, SHED_MODE=off\n`);

// Shedding off: these are ceilings, and C is defined with shedding off (the shedding benchmark compares modes).
const bench = await createBenchEnv('bench', args['database-url'], { API_PROCESSES: args['api-processes'], SHED_MODE: 'off' });
await bench.pool.query('TRUNCATE events, idempotency_keys');
const { key } = await createApiKey(bench.pool, { tenant: 'bench' });

const runs: Run[] = [];
let capacity: number | null;
let timeToDurable: { rate: number; p50Ms: number | null; p99Ms: number | null; events: number; integrity: unknown } | null = null;
let worker: Awaited<ReturnType<typeof measureWorker>> | undefined;
const barePort = await freePort();
const bare = startNode(['--import', 'tsx', 'bench/bare-server.ts', String(barePort)], {});
try {
  // 1 and 2: the API alone (no worker: the stream only grows, and is deleted afterwards).
  const api = await startFloodgate(bench, { worker: false });
  try {
    await waitForOk(`http://127.0.0.1:${barePort}/`, 30_000).catch(() => {});
    runs.push(await hammer('bare node:http, 1 event', `http://127.0.0.1:${barePort}`, key, 1));
    runs.push(await hammer('floodgate, 1 event', api.url, key, 1));
    runs.push(await hammer('floodgate, batches of 100', api.url, key, 100));
  } finally {
    await api.stop();
    await bare.stop();
    await bench.redis.del(bench.config.streamKey);
  }

  // 3: the whole pipeline: capacity, then time to durable at half of it.
  const floodgate = await startFloodgate(bench);
  try {
    const common = {
      url: floodgate.url,
      key,
      seed: 3,
      databaseUrl: bench.databaseUrl,
      timeoutSeconds: 10,
      sloP99Ms,
      drainTimeoutMs: 120_000,
      progress: false,
    };
    const ramp = await runScenario({ ...common, scenario: 'ramp', rate: 200, stepSeconds: 5, duration: 150 });
    capacity = ramp.report.capacity?.capacity ?? null;
    console.log(`${'capacity C (p99 ≤ ' + sloP99Ms + ' ms, 1 event)'.padEnd(34)} ${String(capacity ?? 'n/a').padStart(8)} req/s`);
    if (capacity) {
      const rate = Math.max(1, Math.round(capacity / 2));
      const before = histogramBuckets(await scrape(floodgate.workerMetricsUrl!), 'floodgate_time_to_durable_seconds');
      const steady = await runScenario({ ...common, scenario: 'steady', rate, duration, connections });
      const after = histogramBuckets(await scrape(floodgate.workerMetricsUrl!), 'floodgate_time_to_durable_seconds');
      const ms = (q: number) => {
        const v = quantileBetween(before, after, q);
        return v === null ? null : Math.round(v * 10000) / 10;
      };
      timeToDurable = {
        rate,
        p50Ms: ms(0.5),
        p99Ms: ms(0.99),
        events: (after.get(Infinity) ?? 0) - (before.get(Infinity) ?? 0),
        integrity: steady.report.integrity,
      };
      console.log(
        `${'time to durable at ½C'.padEnd(34)} ${String(rate).padStart(8)} req/s  p50 ${timeToDurable.p50Ms} ms  p99 ${timeToDurable.p99Ms} ms`,
      );
    }
  } finally {
    await floodgate.stop();
  }
  await bench.pool.query('TRUNCATE events, idempotency_keys');

  // 4: the worker against psql, on the same rows.
  worker = await measureWorker({
    pool: bench.pool,
    redis: bench.redis,
    config: bench.config,
    env: { ...bench.env, WORKER_METRICS_PORT: '0' },
    databaseUrl: bench.databaseUrl,
    events: Number(args['worker-events']),
  });
} finally {
  await bare.stop();
  await bench.close();
}

const [bareRun, singleRun, batchRun] = runs as [Run, Run, Run];
const summary = {
  singleVsBare: singleRun.requestsPerSec / bareRun.requestsPerSec,
  singleP99Ms: singleRun.p99,
  batchEventsPerSec: batchRun.eventsPerSec,
  capacity,
  timeToDurableP50Ms: timeToDurable?.p50Ms ?? null,
  timeToDurableP99Ms: timeToDurable?.p99Ms ?? null,
  workerVsPsql: worker ? worker.workerEventsPerSec / worker.psqlEventsPerSec : null,
};
const table = `| Figure | Measured | Aim |
| --- | --- | --- |
| single-event req/s vs bare node:http | ${(summary.singleVsBare * 100).toFixed(0)} % (${singleRun.requestsPerSec.toFixed(0)} vs ${bareRun.requestsPerSec.toFixed(0)}) | ≥ 50 % |
| single-event p99 (closed loop, ${connections} connections) | ${singleRun.p99} ms | ≤ 10 ms |
| batches of 100, events/s accepted | ${batchRun.eventsPerSec.toFixed(0)} | ≥ 150,000 |
| capacity C: highest rate with p99 ≤ ${sloP99Ms} ms (1 event per request) | ${capacity ?? 'n/a'} req/s | |
| time to durable at ½C, p50 / p99 | ${timeToDurable ? `${timeToDurable.p50Ms} / ${timeToDurable.p99Ms} ms at ${timeToDurable.rate} req/s` : 'n/a'} | |
| worker durable rate vs psql \\copy + INSERT | ${worker ? `${(summary.workerVsPsql! * 100).toFixed(0)} % (${worker.workerEventsPerSec.toFixed(0)} vs ${worker.psqlEventsPerSec.toFixed(0)} events/s)` : 'n/a'} | ≥ 70 % |`;
console.log(`\n${table}`);

await mkdir(args.out, { recursive: true });
const file = join(args.out, `bench-${new Date().toISOString().replace(/[:.]/g, '-')}`);
await writeFile(`${file}.json`, JSON.stringify({ machine: m, connections, duration, runs, timeToDurable, worker, summary }, null, 2));
await writeFile(
  `${file}.md`,
  `# floodgate bench\n\n${m.cpus} × ${m.model}, ${m.memGiB} GiB, node ${m.node}; ${connections} connections, ${duration} s per run.\n\n${table}\n`,
);
console.log(`\nreport: ${file}.json\n        ${file}.md`);
// A child may leave a handle behind; the figures are written, so exit.
process.exit(0);
