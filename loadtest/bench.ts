// `npm run bench`: the reference measurements, each next to its ceiling measured in the same run.
//   1. single-event POSTs, Floodgate vs a bare node:http server answering 202 (50 connections)
//   2. batches of 100 events: events/s accepted
//   3. the worker's durable rate vs `psql \copy` into a staging table + INSERT … ON CONFLICT of the same rows
// Figures are ratios within one run: the load generator, API, Redis and Postgres share this machine's cores.
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import pg from 'pg';
import { createApiKey } from '../lib/api-keys.js';
import { loadConfig } from '../lib/config.js';
import { createPool } from '../lib/db.js';
import { ensureDatabase, migrate } from '../lib/migrate.js';
import { ensurePartitions } from '../lib/partitions.js';
import { createRedis } from '../lib/redis.js';
import { FLOODGATE_BIN, REPO_ROOT, freePort, startNode, waitForOk } from './processes.js';
import { generateEvent, seededRandom } from './events.js';
import { measureWorker } from './bench-worker.js';

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '50' },
    'api-processes': { type: 'string', default: '1' },
    'worker-events': { type: 'string', default: '200000' },
    out: { type: 'string', default: `${REPO_ROOT}loadtest/reports` },
  },
});
const duration = Number(args.duration);
const connections = Number(args.connections);

interface Run {
  name: string;
  requestsPerSec: number;
  eventsPerSec: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
}

async function hammer(name: string, url: string, body: string, headers: Record<string, string>, eventsPerRequest: number): Promise<Run> {
  // A short warm-up lets V8 optimise the hot path before it is measured.
  await autocannon({ url, method: 'POST', body, headers, connections, duration: 2 });
  const result = await autocannon({ url, method: 'POST', body, headers, connections, duration });
  const run: Run = {
    name,
    requestsPerSec: result.requests.average,
    eventsPerSec: result.requests.average * eventsPerRequest,
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
  };
  console.log(
    `${name.padEnd(34)} ${run.requestsPerSec.toFixed(0).padStart(8)} req/s ${run.eventsPerSec.toFixed(0).padStart(9)} events/s  p50 ${run.p50} ms  p99 ${run.p99} ms  non-2xx ${run.non2xx}  errors ${run.errors}`,
  );
  return run;
}

const runId = Date.now().toString(36);
const base = loadConfig({});
const databaseUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/floodgate_bench';
const env = {
  DATABASE_URL: databaseUrl,
  REDIS_URL: base.redisUrl,
  STREAM_KEY: `bench:${runId}:events`,
  DEAD_LETTER_STREAM_KEY: `bench:${runId}:dead-letter`,
  CONSUMER_GROUP: `bench-${runId}`,
  LOG_LEVEL: 'warn',
  API_PROCESSES: args['api-processes'],
};
const config = loadConfig(env);

console.log(`floodgate bench — ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}`);
console.log(`${connections} connections, ${duration} s per run, API_PROCESSES=${config.apiProcesses}\n`);

await ensureDatabase(databaseUrl);
const pool = createPool(databaseUrl, { applicationName: 'floodgate-bench' });
await migrate(pool);
await ensurePartitions(pool, config);
await pool.query('TRUNCATE events, idempotency_keys');
const { key } = await createApiKey(pool, { tenant: 'bench' });
const redis = createRedis(config.redisUrl);

const single = JSON.stringify(generateEvent(seededRandom(1), 0));
const random = seededRandom(2);
const batch = JSON.stringify({ events: Array.from({ length: 100 }, (_, i) => generateEvent(random, i)) });
const headers = { 'content-type': 'application/json', authorization: `Bearer ${key}` };

const runs: Run[] = [];
const barePort = await freePort();
const bare = startNode(['--import', 'tsx', 'loadtest/bare-server.ts', String(barePort)], {});
const apiPort = await freePort();
const api = startNode([FLOODGATE_BIN, 'api'], { ...env, PORT: String(apiPort), HOST: '127.0.0.1' });
let worker: Awaited<ReturnType<typeof measureWorker>> | undefined;
try {
  await waitForOk(`http://127.0.0.1:${barePort}/`, 30_000).catch(() => {});
  await waitForOk(`http://127.0.0.1:${apiPort}/readyz`);
  runs.push(await hammer('bare node:http, 1 event', `http://127.0.0.1:${barePort}/v1/events`, single, headers, 1));
  runs.push(await hammer('floodgate, 1 event', `http://127.0.0.1:${apiPort}/v1/events`, single, headers, 1));
  runs.push(await hammer('floodgate, batches of 100', `http://127.0.0.1:${apiPort}/v1/events`, batch, headers, 100));
  await redis.del(config.streamKey);
  await api.stop();
  await bare.stop();
  worker = await measureWorker({ pool, redis, config, env, databaseUrl, events: Number(args['worker-events']) });
} finally {
  await api.stop();
  await bare.stop();
  await redis.del(config.streamKey, config.deadLetterStreamKey);
  redis.disconnect();
  await pool.end();
}

const [bareRun, singleRun, batchRun] = runs as [Run, Run, Run];
const summary = {
  singleVsBare: singleRun.requestsPerSec / bareRun.requestsPerSec,
  singleP99Ms: singleRun.p99,
  batchEventsPerSec: batchRun.eventsPerSec,
  workerVsPsql: worker ? worker.workerEventsPerSec / worker.psqlEventsPerSec : null,
};
console.log(`
| Figure | Measured | Aim |
| --- | --- | --- |
| single-event req/s vs bare node:http | ${(summary.singleVsBare * 100).toFixed(0)} % (${singleRun.requestsPerSec.toFixed(0)} vs ${bareRun.requestsPerSec.toFixed(0)}) | ≥ 50 % |
| single-event p99 | ${singleRun.p99} ms | ≤ 10 ms |
| batches of 100, events/s accepted | ${batchRun.eventsPerSec.toFixed(0)} | ≥ 150,000 |
| worker durable rate vs psql \\copy + INSERT | ${worker ? `${(summary.workerVsPsql! * 100).toFixed(0)} % (${worker.workerEventsPerSec.toFixed(0)} vs ${worker.psqlEventsPerSec.toFixed(0)} events/s)` : 'n/a'} | ≥ 70 % |`);

await mkdir(args.out, { recursive: true });
const file = `${args.out}/bench-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
await writeFile(
  file,
  JSON.stringify({ machine: { cpus: cpus().length, model: cpus()[0]?.model, memGiB: totalmem() / 2 ** 30, node: process.version }, connections, duration, runs, worker, summary }, null, 2),
);
console.log(`\nreport: ${file}`);
// pg.Pool timers and sockets are closed above; exit explicitly in case a child left a handle behind.
void pg;
process.exit(0);
