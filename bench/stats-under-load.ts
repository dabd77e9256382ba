// The stats API at scale: concurrent GET /v1/stats against a running Floodgate over a filled database while ingest
// runs at a fixed rate, in several variants taking turns round by round (the read kept incremental or read in
// full, JSON or the columns encoding, gzipped or not), each next to a bare HTTP server sending a body of the same
// size to the same readers (the floor: what the readers and the machine cost with no work behind the answer),
// then the same question asked of `events` at the same concurrency under the same ingest.
import { loadavg } from 'node:os';
import { createApiKey } from '../lib/api-keys.js';
import { createPool, type Pool } from '../lib/db.js';
import { createBenchEnv, startFloodgate, type StartedFloodgate } from './bench-env.js';
import { processCpuMicros } from './cpu.js';
import { startFloorServer, type FloorServer } from './floor-server.js';
import { ingest } from './ingest-rate.js';
import { statsFromEvents } from './stats-latency.js';
import { planStats, type StatsRequest } from '../lib/stats-query.js';
import { COLUMNS_TYPE } from '../lib/stats-render.js';

const DAY = 86_400_000;

/** Latency quantiles of one set of requests, and how many failed. */
export interface LatencyFigure {
  readonly requests: number;
  readonly failed: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/** One variant of readers over all its rounds. */
export interface VariantFigure {
  readonly name: string;
  readonly latency: LatencyFigure;
  readonly answersPerSecond: number;
  /** Bytes of one answer as sent (compressed when gzipped). */
  readonly bytes: number;
  /** CPU ms per answer: the serving process, the API's read connections' Postgres backends, the readers. */
  readonly cpuMs: { readonly server: number; readonly postgres: number; readonly readers: number };
  /** The floor variant with the same answer size (for the stats variants). */
  readonly floor?: string;
}

/** What one run under load measured. */
export interface StatsUnderLoad {
  readonly variants: readonly VariantFigure[];
  readonly events: LatencyFigure;
  readonly ingestRate: number;
  readonly ingested: number;
  readonly refused: number;
  readonly loadAverage: { readonly before: readonly number[]; readonly after: readonly number[] };
  /** The tenant's events in the 24-hour window when the readers started: what the raw reads aggregate. */
  readonly windowEvents: number;
  /** CPU ms per second the readers' process spent on the ingest alone (subtracted from the readers' figures). */
  readonly ingestCpuMsPerSecond: number;
  /** Cores the worker and its Postgres backends used over the stats rounds. */
  readonly workerCores: number;
  readonly rounds: number;
}

function figure(ms: number[], failed: number): LatencyFigure {
  ms.sort((a, b) => a - b);
  const at = (q: number) => Math.round((ms[Math.min(ms.length - 1, Math.floor(q * ms.length))] ?? NaN) * 10) / 10;
  return { requests: ms.length + failed, failed, p50Ms: at(0.5), p99Ms: at(0.99) };
}

/** `concurrency` loops each calling `run` until `until`; latencies of the successful calls are pushed to `ms`. */
async function closedLoop(concurrency: number, until: () => boolean, run: () => Promise<boolean>, ms: number[]): Promise<number> {
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
  return failed;
}

/** Pids of the database's backends with this application_name. */
async function backends(pool: Pool, applicationName: string): Promise<number[]> {
  const { rows } = await pool.query<{ pid: number }>(
    'SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1',
    [applicationName],
  );
  return rows.map((r) => r.pid);
}

const cpuOf = (pids: number[]) => pids.reduce((total, pid) => total + (processCpuMicros(pid) ?? 0), 0);

/** CPU µs of each process now. */
const cpuByPid = (pids: number[]) => new Map(pids.map((pid) => [pid, processCpuMicros(pid) ?? 0]));

/**
 * CPU µs the backends named `applicationName` used since `before` (a pool closes idle connections and opens new
 * ones between rounds: a backend that appeared since counts whole, one that ended since is lost, a few ms at most).
 */
async function backendCpuSince(pool: Pool, applicationName: string, before: Map<number, number>): Promise<number> {
  let used = 0;
  for (const [pid, micros] of cpuByPid(await backends(pool, applicationName))) used += micros - (before.get(pid) ?? 0);
  return used;
}

interface Reader {
  readonly name: string;
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly pid: number;
  floor?: string;
  // Accumulated over the rounds.
  readonly ms: number[];
  failed: number;
  seconds: number;
  serverMicros: number;
  postgresMicros: number;
  readersMicros: number;
  bytes: number;
}

/**
 * Starts Floodgate over `databaseUrl` (already filled): one API process keeping the rolled-up past, one reading
 * every answer in full (STATS_INCREMENTAL=false), a worker. While ingest posts `rate` events/s of `tenant`,
 * `concurrency` clients loop GET /v1/stats?window=24h&step=5m&group_by=type in each variant for `seconds` in all,
 * in `rounds` turns; then `concurrency` connections ask `events` the same question for `eventsSeconds`.
 */
export async function measureStatsUnderLoad(
  databaseUrl: string,
  options: { tenant: string; concurrency: number; rate: number; seconds: number; eventsSeconds: number; rounds: number },
): Promise<StatsUnderLoad> {
  const bench = await createBenchEnv('bench-analytics-load', databaseUrl);
  const readers = createPool(databaseUrl, { max: options.concurrency, applicationName: 'floodgate-bench-analytics-load' });
  let kept: StartedFloodgate | undefined;
  let full: StartedFloodgate | undefined;
  const floors: FloorServer[] = [];
  try {
    const loadBefore = loadavg();
    kept = await startFloodgate(bench, { env: { API_PROCESSES: '1', SHED_MODE: 'off' } });
    full = await startFloodgate(bench, { env: { API_PROCESSES: '1', SHED_MODE: 'off', STATS_INCREMENTAL: 'false' }, worker: false });
    const { key } = await createApiKey(bench.pool, { tenant: options.tenant, scopes: ['ingest', 'read'] });
    const path = '/v1/stats?window=24h&step=5m&group_by=type';
    const auth = { authorization: `Bearer ${key}` };
    const stop = new AbortController();
    // Runs until both readers are done, however long a round of the slow reads takes.
    const ingesting = ingest(kept.url, key, options.rate, 3600, 'stats-load', stop.signal);
    const { rows } = await bench.pool.query<{ n: string }>(
      "SELECT count(*) AS n FROM events WHERE tenant = $1 AND occurred_at >= now() - interval '24 hours'",
      [options.tenant],
    );
    // Let the ingest reach its rate (and the worker its steady batches), then measure what it costs this process.
    await new Promise((r) => setTimeout(r, 1000));
    const idleCpu = process.cpuUsage();
    const idleStart = performance.now();
    await new Promise((r) => setTimeout(r, 2000));
    const idle = process.cpuUsage(idleCpu);
    const ingestMicrosPerMs = (idle.user + idle.system) / (performance.now() - idleStart);

    const reader = (name: string, url: string, headers: Record<string, string>, pid: number): Reader => ({
      name,
      url,
      headers,
      pid,
      ms: [],
      failed: 0,
      seconds: 0,
      serverMicros: 0,
      postgresMicros: 0,
      readersMicros: 0,
      bytes: 0,
    });
    const identity = { 'accept-encoding': 'identity' };
    const gzip = { 'accept-encoding': 'gzip' };
    const stats = [
      reader('full read, JSON', full.url + path, { ...auth, ...identity }, full.apiPid),
      reader('rolled-up past kept, JSON', kept.url + path, { ...auth, ...identity }, kept.apiPid),
      reader('rolled-up past kept, JSON, gzip', kept.url + path, { ...auth, ...gzip }, kept.apiPid),
      reader('rolled-up past kept, columns', kept.url + path, { ...auth, ...identity, accept: COLUMNS_TYPE }, kept.apiPid),
      reader('rolled-up past kept, columns, gzip', kept.url + path, { ...auth, ...gzip, accept: COLUMNS_TYPE }, kept.apiPid),
    ];
    // One round of every variant first: the API's pools hold their connections and each answer's size is known.
    for (const r of stats) {
      const sizes = await Promise.all(
        Array.from({ length: options.concurrency }, async () => {
          const res = await fetch(r.url, { headers: r.headers });
          const body = await res.arrayBuffer();
          if (res.status !== 200) throw new Error(`${r.name}: ${res.status} ${Buffer.from(body).toString().slice(0, 200)}`);
          return Number(res.headers.get('content-length') ?? body.byteLength);
        }),
      );
      r.bytes = sizes[sizes.length - 1]!;
    }
    // A floor per answer size (the full and the kept JSON are the same size).
    const floorReaders: Reader[] = [];
    for (const r of stats) {
      const bytes = r.bytes;
      let floor = floorReaders.find((f) => Math.abs(f.bytes - bytes) <= bytes * 0.05);
      if (!floor) {
        const server = await startFloorServer(bytes);
        floors.push(server);
        floor = reader(`bare HTTP server, ${bytes} bytes`, server.url, {}, server.pid);
        floor.bytes = bytes;
        floorReaders.push(floor);
      }
      r.floor = floor.name;
    }
    const all = [...stats, ...floorReaders];
    const workerPids = [kept.workerPid!, ...(await backends(bench.pool, 'floodgate-worker'))];
    const workerStart = cpuOf(workerPids);
    const statsStart = performance.now();
    const roundMs = (options.seconds * 1000) / options.rounds;
    for (let round = 0; round < options.rounds; round++) {
      for (const r of all) {
        const server = processCpuMicros(r.pid) ?? 0;
        const postgres = cpuByPid(await backends(bench.pool, 'floodgate-api-read'));
        const own = process.cpuUsage();
        const started = performance.now();
        const end = started + roundMs;
        r.failed += await closedLoop(
          options.concurrency,
          () => performance.now() > end,
          async () => {
            const res = await fetch(r.url, { headers: r.headers });
            await res.arrayBuffer();
            return res.status === 200;
          },
          r.ms,
        );
        const elapsed = performance.now() - started;
        const used = process.cpuUsage(own);
        r.seconds += elapsed / 1000;
        r.serverMicros += (processCpuMicros(r.pid) ?? 0) - server;
        r.postgresMicros += await backendCpuSince(bench.pool, 'floodgate-api-read', postgres);
        r.readersMicros += used.user + used.system - ingestMicrosPerMs * elapsed;
      }
    }
    const workerCores = (cpuOf(workerPids) - workerStart) / ((performance.now() - statsStart) * 1000);
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
    const eventsMs: number[] = [];
    const eventsFailed = await closedLoop(
      options.concurrency,
      // Every connection asks at least once, however long one round takes.
      () => !first && performance.now() > eventsEnd,
      async () => {
        const plan = planStats(request, Date.now());
        await readers.query(statsFromEvents(request, plan.from, plan.to));
        first = false;
        return true;
      },
      eventsMs,
    );
    stop.abort();
    const { sent, refused } = await ingesting;
    const perAnswer = (micros: number, r: Reader) => Math.round((micros / 1000 / Math.max(1, r.ms.length)) * 100) / 100;
    return {
      variants: all.map((r) => ({
        name: r.name,
        latency: figure(r.ms, r.failed),
        answersPerSecond: Math.round(r.ms.length / r.seconds),
        bytes: r.bytes,
        cpuMs: {
          server: perAnswer(r.serverMicros, r),
          postgres: r.floor ? perAnswer(r.postgresMicros, r) : 0,
          readers: perAnswer(r.readersMicros, r),
        },
        ...(r.floor ? { floor: r.floor } : {}),
      })),
      events: figure(eventsMs, eventsFailed),
      ingestRate: options.rate,
      ingested: sent,
      refused,
      loadAverage: { before: loadBefore, after: loadavg() },
      windowEvents: Number(rows[0]!.n),
      ingestCpuMsPerSecond: Math.round(ingestMicrosPerMs * 10) / 10,
      workerCores: Math.round(workerCores * 100) / 100,
      rounds: options.rounds,
    };
  } finally {
    for (const floor of floors) floor.stop();
    await readers.end();
    await full?.stop();
    await kept?.stop();
    await bench.close();
  }
}
