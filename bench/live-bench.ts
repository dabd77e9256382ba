/**
 * `npm run bench:live`: the live view's fan-out and its cost.
 *
 * 1. Fan-out: one API process (API_PROCESSES=1) and a worker; events ingested at a steady rate, first with no live
 *    connection, then with N SSE connections of the tenant (no filter). Reports events delivered per second
 *    against what was due, the API's and the worker's CPU in both windows (the difference is the fan-out's cost),
 *    the API's RSS, accept → live delivery latency seen by one probe connection, and commit → send (the worker's
 *    commit to the batch written to every connection) from the API's floodgate_live_commit_to_send_seconds.
 *    `--background-rate` adds the ingest of a second tenant nobody watches to both windows.
 * 2. The worker's cost: the same ingest (a higher rate) with LIVE_ENABLED=false, with the live view on but nobody
 *    listening, and with one listener of the tenant; worker CPU per 1,000 events stored, and the bytes it sent
 *    Redis for the live view.
 *
 * Everything shares the machine (generator, clients, API, worker, Redis, Postgres): compare figures within one
 * run, not across runs.
 */
import { Agent, request, type IncomingMessage } from 'node:http';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { createApiKey } from '../lib/api-keys.js';
import { createBenchEnv, startFloodgate, type BenchEnv, type StartedFloodgate } from './bench-env.js';
import { processCpuMicros } from './cpu.js';
import { ingest } from './ingest-rate.js';
import { histogramBuckets, quantileBetween, scrape } from './scrape.js';

const { values: args } = parseArgs({
  options: {
    connections: { type: 'string', default: '1000' },
    rate: { type: 'string', default: '100' },
    'worker-rate': { type: 'string', default: '4000' },
    // Events/s of a second tenant nobody watches, during both fan-out windows: the rest of the ingest a live
    // audience shares the API and the worker with (0: none).
    'background-rate': { type: 'string', default: '0' },
    seconds: { type: 'string', default: '15' },
    'database-url': { type: 'string', default: process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/floodgate_bench' },
  },
});
const CONNECTIONS = Number(args.connections);
const RATE = Number(args.rate);
const WORKER_RATE = Number(args['worker-rate']);
const SECONDS = Number(args.seconds);
const BACKGROUND_RATE = Number(args['background-rate']);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** N SSE connections counting the events they receive; the first also measures accept → delivery latency. */
interface Audience {
  delivered(): number;
  latenciesMs: number[];
  close(): void;
}

async function openAudience(url: string, key: string, n: number): Promise<Audience> {
  const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
  let delivered = 0;
  const latenciesMs: number[] = [];
  const requests: ReturnType<typeof request>[] = [];
  const open = (probe: boolean) =>
    new Promise<void>((resolve, reject) => {
      const req = request(`${url}/v1/events/live`, { agent, headers: { authorization: `Bearer ${key}`, accept: 'text/event-stream' } });
      requests.push(req);
      req.once('error', reject);
      req.once('response', (res: IncomingMessage) => {
        if (res.statusCode !== 200) return reject(new Error(`live answered ${res.statusCode}`));
        res.setEncoding('utf8');
        let carry = '';
        res.on('data', (chunk: string) => {
          const text = carry + chunk;
          // Counting frames is enough for all but the probe; a marker split across chunks is carried over.
          for (let i = text.indexOf('\ndata: '); i >= 0; i = text.indexOf('\ndata: ', i + 1)) delivered++;
          if (probe) {
            const now = Date.now();
            for (const m of text.matchAll(/"received_at":"([^"]+)"/g)) latenciesMs.push(now - Date.parse(m[1]!));
          }
          carry = text.slice(-6);
        });
        res.on('error', () => {});
        resolve();
      });
      req.end();
    });
  for (let i = 0; i < n; i += 100) await Promise.all(Array.from({ length: Math.min(100, n - i) }, (_, j) => open(i + j === 0)));
  return {
    delivered: () => delivered,
    latenciesMs,
    close() {
      for (const req of requests) req.destroy();
      agent.destroy();
    },
  };
}

async function storedCount(bench: BenchEnv, tenant: string): Promise<number> {
  const { rows } = await bench.pool.query<{ n: string }>('SELECT count(*) AS n FROM events WHERE tenant = $1', [tenant]);
  return Number(rows[0]!.n);
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(url)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(name) && !l.startsWith('#'))
    .reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
}

/** The lines of a metrics text for batches someone listened to (the publish histogram has both kinds). */
function listened(text: string): string {
  return text
    .split('\n')
    .filter((line) => line.includes('listened="yes"'))
    .join('\n');
}

/** CPU µs of a process between two calls of the returned function. */
function cpuWindow(pid: number): () => number {
  const start = processCpuMicros(pid) ?? 0;
  return () => (processCpuMicros(pid) ?? 0) - start;
}

async function fanOut(bench: BenchEnv): Promise<Record<string, number>> {
  const floodgate = await startFloodgate(bench, {
    env: { API_PROCESSES: '1', SHED_MODE: 'off', LIVE_MAX_CONNECTIONS: String(CONNECTIONS + 10) },
  });
  try {
    const tenant = `fanout-${bench.runId}`;
    const { key } = await createApiKey(bench.pool, { tenant, scopes: ['ingest', 'read'] });
    const background = await createApiKey(bench.pool, { tenant: `background-${bench.runId}`, scopes: ['ingest'] });
    const window = async (label: string) => {
      const api = cpuWindow(floodgate.apiPid);
      const worker = cpuWindow(floodgate.workerPid!);
      const own = process.cpuUsage();
      const started = performance.now();
      const workerBefore = await scrape(floodgate.workerMetricsUrl!);
      const durableBefore = histogramBuckets(workerBefore, 'floodgate_time_to_durable_seconds');
      const publishBefore = histogramBuckets(listened(workerBefore), 'floodgate_live_publish_duration_seconds');
      const batchesBefore = await metric(floodgate.metricsUrl, 'floodgate_live_batches_received_total');
      const [{ sent, refused }, other] = await Promise.all([
        ingest(floodgate.url, key, RATE, SECONDS, label),
        BACKGROUND_RATE > 0 ? ingest(floodgate.url, background.key, BACKGROUND_RATE, SECONDS, label) : { sent: 0, refused: 0 },
      ]);
      const workerAfter = await scrape(floodgate.workerMetricsUrl!);
      const durableAfter = histogramBuckets(workerAfter, 'floodgate_time_to_durable_seconds');
      const publishAfter = histogramBuckets(listened(workerAfter), 'floodgate_live_publish_duration_seconds');
      const elapsed = (performance.now() - started) / 1000;
      const used = process.cpuUsage(own);
      const batchesReceived = (await metric(floodgate.metricsUrl, 'floodgate_live_batches_received_total')) - batchesBefore;
      return {
        batchesReceived,
        sent,
        refused,
        backgroundSent: other.sent,
        backgroundRefused: other.refused,
        // Acceptance → commit of every event stored in the window, from the worker's histogram.
        durableP99Ms: (quantileBetween(durableBefore, durableAfter, 0.99) ?? NaN) * 1000,
        // Commit → the batch published to Redis (listener check included), per batch of a listened tenant.
        publishP99Ms: (quantileBetween(publishBefore, publishAfter, 0.99) ?? NaN) * 1000,
        elapsed,
        apiCpu: api() / 1e6 / elapsed,
        workerCpu: worker() / 1e6 / elapsed,
        clientCpu: (used.user + used.system) / 1e6 / elapsed,
      };
    };
    const quiet = await window('quiet');
    const rssIdle = rssMiB(floodgate.apiPid);
    const audience = await openAudience(floodgate.url, key, CONNECTIONS);
    await sleep(1000);
    const rssBefore = rssMiB(floodgate.apiPid);
    const heapBefore = await metric(floodgate.metricsUrl, 'nodejs_heap_size_used_bytes');
    const before = audience.delivered();
    const commitBefore = histogramBuckets(await scrape(floodgate.metricsUrl), 'floodgate_live_commit_to_send_seconds');
    const loud = await window('loud');
    const inWindow = audience.delivered() - before;
    // Let the last batches arrive, then check that every connection got every event.
    const due = loud.sent * CONNECTIONS;
    const deadline = Date.now() + 15_000;
    while (audience.delivered() - before < due && Date.now() < deadline) await sleep(200);
    // Every batch of the window, the last ones included (they arrive after it).
    const commitAfter = histogramBuckets(await scrape(floodgate.metricsUrl), 'floodgate_live_commit_to_send_seconds');
    const commitToSend = (q: number) => (quantileBetween(commitBefore, commitAfter, q) ?? NaN) * 1000;
    const rssAfter = rssMiB(floodgate.apiPid);
    const heapAfter = await metric(floodgate.metricsUrl, 'nodejs_heap_size_used_bytes');
    const latencies = audience.latenciesMs.sort((a, b) => a - b);
    const closes = await metric(floodgate.metricsUrl, 'floodgate_live_closes_total');
    audience.close();
    return {
      connections: CONNECTIONS,
      ratePerSecond: RATE,
      seconds: SECONDS,
      refusedEvents: quiet.refused + loud.refused,
      backgroundRatePerSecond: BACKGROUND_RATE,
      backgroundAccepted: quiet.backgroundSent + loud.backgroundSent,
      backgroundRefused: quiet.backgroundRefused + loud.backgroundRefused,
      durableP99MsWithoutListeners: quiet.durableP99Ms,
      durableP99MsWithListeners: loud.durableP99Ms,
      publishP99MsWithListeners: loud.publishP99Ms,
      // Live batches the API received from Redis in the window: each is written to every connection.
      batchesReceivedWithListeners: loud.batchesReceived,
      apiCpuWithoutListeners: quiet.apiCpu,
      apiCpuWithListeners: loud.apiCpu,
      workerCpuWithoutListeners: quiet.workerCpu,
      workerCpuWithListeners: loud.workerCpu,
      // The generator and the N clients are this process: when it is saturated, ticks are late and clients lag.
      clientCpuWithListeners: loud.clientCpu,
      windowSeconds: loud.elapsed,
      deliveredPerSecond: inWindow / loud.elapsed,
      duePerSecond: (loud.sent * CONNECTIONS) / loud.elapsed,
      deliveredShare: (audience.delivered() - before) / due,
      apiRssMiBWithoutConnections: rssIdle,
      apiRssMiBConnectedIdle: rssBefore,
      apiRssMiBAfterStreaming: rssAfter,
      apiHeapUsedMiBConnectedIdle: heapBefore / 2 ** 20,
      apiHeapUsedMiBAfterStreaming: heapAfter / 2 ** 20,
      apiRssKiBPerIdleConnection: ((rssBefore - rssIdle) * 1024) / CONNECTIONS,
      // Acceptance → delivery, seen by the probe connection (time to durable included).
      latencyP50Ms: quantile(latencies, 0.5),
      latencyP99Ms: quantile(latencies, 0.99),
      // The worker's commit → the batch written to every connection, per batch (API histogram, interpolated
      // within its buckets: 0.1, 0.25, 0.5 s…).
      commitToSendBatches: (commitAfter.get(Infinity) ?? 0) - (commitBefore.get(Infinity) ?? 0),
      commitToSendP50Ms: commitToSend(0.5),
      commitToSendP99Ms: commitToSend(0.99),
      serverCloses: closes,
    };
  } finally {
    await floodgate.stop();
  }
}

async function workerCost(bench: BenchEnv, mode: 'off' | 'unwatched' | 'watched'): Promise<Record<string, number>> {
  const floodgate: StartedFloodgate = await startFloodgate(bench, {
    env: { API_PROCESSES: '1', SHED_MODE: 'off', LIVE_ENABLED: mode === 'off' ? 'false' : 'true' },
  });
  try {
    const tenant = `cost-${mode}-${bench.runId}`;
    const { key } = await createApiKey(bench.pool, { tenant, scopes: ['ingest', 'read'] });
    const audience = mode === 'watched' ? await openAudience(floodgate.url, key, 1) : undefined;
    const worker = cpuWindow(floodgate.workerPid!);
    const { sent, refused } = await ingest(floodgate.url, key, WORKER_RATE, SECONDS, mode);
    const deadline = Date.now() + 60_000;
    while ((await storedCount(bench, tenant)) < sent && Date.now() < deadline) await sleep(100);
    // The publisher works after the commit: give it a moment to finish the last batch.
    await sleep(500);
    const cpu = worker();
    const bytes = await metric(floodgate.workerMetricsUrl!, 'floodgate_live_published_bytes_total');
    const requestBytes = await metric(floodgate.metricsUrl, 'floodgate_http_request_bytes_total');
    audience?.close();
    return {
      events: sent,
      refused,
      workerCpuMsPer1000: cpu / 1000 / (sent / 1000),
      liveBytesPerEvent: bytes / sent,
      ingestBytesPerEvent: requestBytes / sent,
      delivered: audience?.delivered() ?? 0,
    };
  } finally {
    await floodgate.stop();
  }
}

const bench = await createBenchEnv('bench-live', args['database-url']);
try {
  const started = new Date().toISOString();
  const loadBefore = loadavg()[0];
  const fan = await fanOut(bench);
  const loadAfterFanOut = loadavg()[0];
  // --worker-rate 0 skips the worker's cost part (the fan-out alone, e.g. at a larger audience).
  const cost =
    WORKER_RATE <= 0
      ? null
      : {
          off: await workerCost(bench, 'off'),
          unwatched: await workerCost(bench, 'unwatched'),
          watched: await workerCost(bench, 'watched'),
        };
  console.log(
    JSON.stringify(
      {
        started,
        machine: `${process.platform} node ${process.version}`,
        loadAverage1m: { before: loadBefore, afterFanOut: loadAfterFanOut },
        fanOut: fan,
        workerCost: cost,
      },
      null,
      2,
    ),
  );
} finally {
  await bench.close();
}
