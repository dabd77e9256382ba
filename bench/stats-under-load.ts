// The stats API at scale: concurrent GET /v1/stats against a running Floodgate (one API process and a worker) over
// a filled database while ingest runs at a fixed rate, next to the same question asked of `events` at the same
// concurrency under the same ingest.
import { loadavg } from 'node:os';
import { createApiKey } from '../lib/api-keys.js';
import { createPool } from '../lib/db.js';
import { createBenchEnv, startFloodgate, type StartedFloodgate } from './bench-env.js';
import { processCpuMicros } from './cpu.js';
import { ingest } from './ingest-rate.js';
import { statsFromEvents } from './stats-latency.js';
import { planStats, type StatsRequest } from '../lib/stats-query.js';

const DAY = 86_400_000;

/** Latency quantiles of one set of requests, and how many failed. */
export interface LatencyFigure {
  readonly requests: number;
  readonly failed: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/** What one run under load measured. */
export interface StatsUnderLoad {
  readonly api: LatencyFigure;
  readonly events: LatencyFigure;
  readonly ingestRate: number;
  readonly ingested: number;
  readonly refused: number;
  readonly loadAverage: readonly number[];
  /** The tenant's events in the 24-hour window when the readers started: what the raw reads aggregate. */
  readonly windowEvents: number;
  /** Cores used while the API readers ran: the API process, the worker, and the database's Postgres backends. */
  readonly cores: { readonly api: number; readonly worker: number; readonly postgres: number };
}

/** CPU µs of the given processes from now until the returned function is called. */
function cpuOf(pids: number[]): () => number {
  const sum = () => pids.reduce((total, pid) => total + (processCpuMicros(pid) ?? 0), 0);
  const start = sum();
  return () => sum() - start;
}

function figure(ms: number[], failed: number): LatencyFigure {
  ms.sort((a, b) => a - b);
  const at = (q: number) => Math.round((ms[Math.min(ms.length - 1, Math.floor(q * ms.length))] ?? NaN) * 10) / 10;
  return { requests: ms.length + failed, failed, p50Ms: at(0.5), p99Ms: at(0.99) };
}

/** `concurrency` loops each calling `run` until `until`; latencies of the successful calls. */
async function closedLoop(concurrency: number, until: () => boolean, run: () => Promise<boolean>): Promise<LatencyFigure> {
  const ms: number[] = [];
  let failed = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (!until()) {
        const started = performance.now();
        if (await run().catch(() => false)) ms.push(performance.now() - started);
        else failed++;
      }
    }),
  );
  return figure(ms, failed);
}

/**
 * Starts Floodgate over `databaseUrl` (already filled), then for `seconds` runs `concurrency` clients looping
 * GET /v1/stats?window=24h&step=5m&group_by=type as `tenant` while ingest posts `rate` events/s of the same
 * tenant; then, under the same ingest, `concurrency` connections asking `events` the same question for
 * `eventsSeconds` (at least one round each).
 */
export async function measureStatsUnderLoad(
  databaseUrl: string,
  options: { tenant: string; concurrency: number; rate: number; seconds: number; eventsSeconds: number },
): Promise<StatsUnderLoad> {
  const bench = await createBenchEnv('bench-analytics-load', databaseUrl);
  const readers = createPool(databaseUrl, { max: options.concurrency, applicationName: 'floodgate-bench-analytics-load' });
  let floodgate: StartedFloodgate | undefined;
  try {
    floodgate = await startFloodgate(bench, { env: { API_PROCESSES: '1', SHED_MODE: 'off' } });
    const { key } = await createApiKey(bench.pool, { tenant: options.tenant, scopes: ['ingest', 'read'] });
    const url = `${floodgate.url}/v1/stats?window=24h&step=5m&group_by=type`;
    const headers = { authorization: `Bearer ${key}` };
    const stop = new AbortController();
    // Runs until both readers are done, however long a round of the slow reads takes.
    const ingesting = ingest(floodgate.url, key, options.rate, 3600, 'stats-load', stop.signal);
    const { rows } = await bench.pool.query<{ n: string }>(
      "SELECT count(*) AS n FROM events WHERE tenant = $1 AND occurred_at >= now() - interval '24 hours'",
      [options.tenant],
    );
    // Let the ingest reach its rate (and the worker its steady batches) before timing readers.
    await new Promise((r) => setTimeout(r, 1000));
    const ask = async () => {
      const res = await fetch(url, { headers });
      await res.arrayBuffer();
      return res.status === 200;
    };
    // One round first, so that the API's pool holds all its connections when their backends are counted.
    await Promise.all(Array.from({ length: options.concurrency }, ask));
    const { rows: backends } = await bench.pool.query<{ pid: number }>(
      'SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
    );
    const cpu = {
      api: cpuOf([floodgate.apiPid]),
      worker: cpuOf([floodgate.workerPid!]),
      postgres: cpuOf(backends.map((b) => b.pid)),
    };
    const apiStarted = performance.now();
    const apiEnd = apiStarted + options.seconds * 1000;
    const api = await closedLoop(options.concurrency, () => performance.now() > apiEnd, ask);
    const apiMicros = (performance.now() - apiStarted) * 1000;
    const cores = { api: cpu.api() / apiMicros, worker: cpu.worker() / apiMicros, postgres: cpu.postgres() / apiMicros };
    const request: StatsRequest = {
      tenant: options.tenant,
      windowMs: DAY,
      stepMs: 300_000,
      type: null,
      groupBy: 'type',
      aggregates: ['count'],
    };
    const eventsEnd = performance.now() + options.eventsSeconds * 1000;
    let first = true;
    const events = await closedLoop(
      options.concurrency,
      // Every connection asks at least once, however long one round takes.
      () => !first && performance.now() > eventsEnd,
      async () => {
        const plan = planStats(request, Date.now());
        await readers.query(statsFromEvents(request, plan.from, plan.to));
        first = false;
        return true;
      },
    );
    stop.abort();
    const { sent, refused } = await ingesting;
    return {
      api,
      events,
      ingestRate: options.rate,
      ingested: sent,
      refused,
      loadAverage: loadavg(),
      windowEvents: Number(rows[0]!.n),
      cores,
    };
  } finally {
    await readers.end();
    await floodgate?.stop();
    await bench.close();
  }
}
