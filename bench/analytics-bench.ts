// `npm run bench:analytics`: what the rollups cost the worker and what the query API costs a reader.
//   1. the merge statement's own time per batch without rollups, with them in the statement, with a trigger
//   2. events/s through the worker's write path (writeEntries) without rollups and with each way of keeping them
//   3. REFRESH MATERIALIZED VIEW CONCURRENTLY of hour/day views over a full retention of minute rollups
//   4. stats and events query latency over a few million events
//   5. a page of events with the (tenant, occurred_at, id) index and with the (tenant, occurred_at) one it replaced
//   6. (`--parts load`, with `queries`) concurrent GET /v1/stats against a running Floodgate while ingest runs
//   7. (`--parts pending`) stats reads with a second of unfolded minute deltas pending, and once folded
// Every figure is a ratio or a latency measured within this one run, on a private database it drops at the end.
import { randomUUID } from 'node:crypto';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { loadConfig } from '../lib/config.js';
import { createPool, type Pool } from '../lib/db.js';
import { migrate } from '../lib/migrate.js';
import { ensurePartitions } from '../lib/partitions.js';
import { machine } from '../loadtest/report.js';
import { measureRollupCost } from './rollup-cost.js';
import { measureRollupOverhead } from './rollup-overhead.js';
import type { Scenario } from './rollup-variants.js';
import { measureViewRefresh } from './view-refresh.js';
import { measurePendingReads } from './pending-reads.js';
import { fillEvents, measureIndexChoice, measureQueries } from './stats-latency.js';
import { measureStatsUnderLoad } from './stats-under-load.js';

const { values: args } = parseArgs({
  options: {
    'admin-url': { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/postgres' },
    events: { type: 'string', default: '50000' },
    samples: { type: 'string', default: '150' },
    'refresh-days': { type: 'string', default: '30' },
    'query-events': { type: 'string', default: '3000000' },
    'query-days': { type: 'string', default: '7' },
    parts: { type: 'string', default: 'overhead,cost,refresh,queries,indexes' },
    // Which rollup variants to compare (indexes into bench/rollup-cost.ts's list; the first is the baseline).
    variants: { type: 'string', default: '0,1,2,3,4' },
    scenarios: { type: 'string', default: '0,1,2,3,4' },
    // The `load` part (not in the default parts; it reads the database `queries` filled, so run them together, or
    // --reuse a kept run without the parts that truncate: overhead, cost, refresh): concurrent GET /v1/stats against a running Floodgate under ingest.
    'load-concurrency': { type: 'string', default: '50' },
    'load-rate': { type: 'string', default: '1500' },
    'load-seconds': { type: 'string', default: '20' },
    'load-events-seconds': { type: 'string', default: '10' },
    keep: { type: 'boolean', default: false },
    // Reuse the databases of a run kept with --keep (its id, printed at the start): the 3 M events are not refilled.
    reuse: { type: 'string' },
  },
});
const parts = new Set(args.parts.split(','));

const SCENARIOS: Scenario[] = [
  { name: 'one tenant, events of the last minute, one writer', tenants: 1, spreadMinutes: 1, writers: 1 },
  { name: '20 tenants, events of the last 10 minutes, one writer', tenants: 20, spreadMinutes: 10, writers: 1 },
  { name: 'one tenant, events of the last minute, two writers at once', tenants: 1, spreadMinutes: 1, writers: 2 },
  { name: '20 tenants, last 10 minutes, 2 KB of data per event', tenants: 20, spreadMinutes: 10, writers: 1, dataBytes: 2048 },
  // Live ingest: the SDK sends what it tracked within its flush interval (1 s), so a batch holds the last minute or two.
  { name: '20 tenants, events of the last minute, one writer', tenants: 20, spreadMinutes: 1, writers: 1 },
];

const runId = args.reuse ?? randomUUID().slice(0, 8);
const adminUrl = args['admin-url'];
// One database per variant compared (the cost part), at least one (every other part uses the first).
const databases = parts.has('cost') ? args.variants.split(',').length : 1;
const names = Array.from({ length: databases }, (_, i) => `floodgate_bench_analytics_${runId}_${i}`);
const urlOf = (name: string) => Object.assign(new URL(adminUrl), { pathname: `/${name}` }).href;

async function admin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

const pools: Pool[] = [];
try {
  for (const name of names) {
    if (!args.reuse) await admin(`CREATE DATABASE ${name}`);
    const pool = createPool(urlOf(name), { max: 2, applicationName: 'floodgate-bench-analytics' });
    pools.push(pool);
    await migrate(pool);
    await ensurePartitions(pool, loadConfig({}));
  }
  const pool = pools[0]!;
  console.log(
    `# bench:analytics ${new Date().toISOString()} run ${runId} ${JSON.stringify(machine())} load average ${loadavg()
      .map((x) => x.toFixed(1))
      .join(' ')}`,
  );
  if (parts.has('overhead')) {
    console.log(
      '\n| Scenario | Statement without rollups: wall ms (CPU ms) | + rollups in the merge statement | + rollups by trigger | Samples |',
    );
    console.log('| --- | ---: | ---: | ---: | ---: |');
    for (const scenario of args.scenarios.split(',').map((i) => SCENARIOS[Number(i)]!)) {
      if (scenario.writers > 1) continue;
      const f = await measureRollupOverhead(pool, scenario, 50_000, Number(args.samples));
      const signed = (x: number) => (x >= 0 ? `+${x}` : `${x}`);
      console.log(
        `| ${f.scenario} | ${f.plainMs} (${f.plainCpuMs}) | ${signed(f.mergeMs)} (${signed(f.mergeCpuMs)}) | ${signed(f.triggerMs)} (${signed(f.triggerCpuMs)}) | ${f.samples} |`,
      );
    }
  }
  if (parts.has('cost')) {
    const scenarios = args.scenarios.split(',').map((i) => SCENARIOS[Number(i)]!);
    const variants = args.variants.split(',').map(Number);
    const rows = await measureRollupCost(
      pools.map((p) => ({ pool: p })),
      scenarios,
      Number(args.events),
      variants,
    );
    console.log(
      '\n| Scenario | Variant | Events/s | vs no rollups | Median ms per step | Backend CPU ms per batch | Fold CPU ms per batch (folds) | Roll-up CPU ms per batch (passes, stale minutes) | Minute rows per batch |',
    );
    console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const r of rows) {
      const rollUps = r.rollUps ? `${r.rollUpCpuMsPerBatch} (${r.rollUps.passes}, ${r.rollUps.staleMinutes})` : '';
      const folds = r.folds !== null ? `${r.foldCpuMsPerBatch} (${r.folds})` : '';
      console.log(
        `| ${r.scenario} | ${r.variant} | ${r.eventsPerSec} | ${r.relative.toFixed(3)} | ${r.msPerBatch} | ${r.backendCpuMsPerBatch} | ${folds} | ${rollUps} | ${r.groupsPerBatch} |`,
      );
    }
  }
  if (parts.has('pending')) {
    const config = loadConfig({});
    const batches = 14;
    const f = await measurePendingReads(pool, SCENARIOS[1]!, {
      batches,
      runs: 30,
      retentionDays: config.retentionDays,
      maxPoints: config.statsMaxPoints,
    });
    console.log(
      `\nStats reads of tenant-3 with ${batches} unfolded batches of the 20-tenant scenario pending (${f.pendingRows} rows, ${f.pendingDeltas} minute deltas), then folded; median ms of 30 runs:\n`,
    );
    console.log('| Query | Pending | Folded |');
    console.log('| --- | ---: | ---: |');
    for (const r of f.figures) console.log(`| ${r.name} | ${r.pendingMs} | ${r.foldedMs} |`);
  }
  if (parts.has('refresh')) {
    const f = await measureViewRefresh(pool, { tenants: 10, types: 8, days: Number(args['refresh-days']) });
    console.log(
      `\nMaterialized views over ${f.minuteRows} minute rows: REFRESH CONCURRENTLY hour ${f.hourRefreshMs} ms, day ${f.dayRefreshMs} ms`,
    );
  }
  if (parts.has('queries')) {
    const config = loadConfig({});
    if (!args.reuse) {
      const filled = await fillEvents(pool, { events: Number(args['query-events']), tenants: 10, days: Number(args['query-days']) });
      console.log(
        `\nfloodgate_rebuild_rollups over ${args['query-events']} events: ${filled.rebuildSeconds.toFixed(1)} s ` +
          `(${filled.minuteRows} minute, ${filled.hourRows} hour, ${filled.dayRows} day rows)`,
      );
    }
    const figures = await measureQueries(pool, { retentionDays: config.retentionDays, maxPoints: config.statsMaxPoints });
    console.log(`\n${args['query-events']} events of 10 tenants over ${args['query-days']} days; queries of one tenant:\n`);
    console.log('| Query | Median ms | p90 ms | Runs | Partitions the plan may read |');
    console.log('| --- | ---: | ---: | ---: | --- |');
    for (const f of figures) console.log(`| ${f.name} | ${f.medianMs} | ${f.p90Ms} | ${f.runs} | ${f.partitions} |`);
  }
  if (parts.has('load')) {
    const concurrency = Number(args['load-concurrency']);
    const f = await measureStatsUnderLoad(urlOf(names[0]!), {
      tenant: 'tenant-3',
      concurrency,
      rate: Number(args['load-rate']),
      seconds: Number(args['load-seconds']),
      eventsSeconds: Number(args['load-events-seconds']),
    });
    console.log(
      `\n${concurrency} concurrent readers of tenant-3 (${f.windowEvents} events in the 24h window), 24h step 5m group_by=type, while ingest posts ${f.ingestRate} events/s ` +
        `(${f.ingested} accepted, ${f.refused} refused); load average ${f.loadAverage.map((x) => x.toFixed(1)).join(' ')}:\n`,
    );
    console.log('| Reader | Requests | Failed | p50 ms | p99 ms |');
    console.log('| --- | ---: | ---: | ---: | ---: |');
    console.log(`| GET /v1/stats (rollups) | ${f.api.requests} | ${f.api.failed} | ${f.api.p50Ms} | ${f.api.p99Ms} |`);
    console.log(
      `| the same from events (pool of ${concurrency}) | ${f.events.requests} | ${f.events.failed} | ${f.events.p50Ms} | ${f.events.p99Ms} |`,
    );
    console.log(
      `\ncores while the API readers ran: API ${f.cores.api.toFixed(2)}, worker ${f.cores.worker.toFixed(2)}, ` +
        `Postgres backends of the database ${f.cores.postgres.toFixed(2)}`,
    );
    console.log(`\nevents / rollups: p50 ${(f.events.p50Ms / f.api.p50Ms).toFixed(1)}×, p99 ${(f.events.p99Ms / f.api.p99Ms).toFixed(1)}×`);
  }
  if (parts.has('indexes')) {
    const { figures: indexes, buildSeconds } = await measureIndexChoice(pool, loadConfig({}).retentionDays);
    console.log('\n| Index | Page of 100 | Median ms | Plan |');
    console.log('| --- | --- | ---: | --- |');
    for (const f of indexes) console.log(`| ${f.index} | ${f.page} | ${f.medianMs} | ${f.plan} |`);
    console.log(`\nCREATE INDEX … (tenant, occurred_at, id) over every partition: ${buildSeconds.toFixed(1)} s`);
  }
} finally {
  for (const pool of pools) await pool.end();
  if (!args.keep && !args.reuse) for (const name of names) await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}
