// `npm run bench:clients`: overload measured with real client behaviour, in one run.
//   1. start Floodgate (API + worker, private database and stream keys) with SHED_MODE=off and find C in events/s:
//      the client model (loadtest/client-model.ts: --clients simulated applications, each with its own SDK client,
//      tracking a 20/30/50 critical/normal/low mix) ramps the offered rate until delivery p99 > --delivery-slo
//      (skipped with --capacity);
//   2. restart Floodgate with SHED_MODE=enforce (or --shed-mode) and offer ½C, 2×C, 4×C for --duration s each,
//      then ½C again;
//   3. report delivered events/s vs 0.9 C, critical delivered within 10 s, drops per class, recovery, the
//      integrity check of both runs (every delivered event stored exactly once), and where the CPU went.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { dedupMarkerKey } from '../app/enqueue.js';
import { createApiKey } from '../lib/api-keys.js';
import { dedupHorizonMs } from '../lib/idempotency-keys.js';
import { renderClientsMarkdown } from '../loadtest/client-report.js';
import { machine } from '../loadtest/report.js';
import { runClientsScenario, type ClientsScenarioOptions } from '../loadtest/run-clients.js';
import { createBenchEnv, startFloodgate, type BenchEnv } from './bench-env.js';
import { cpuShares, createCpuMeter, type CpuSecond } from './cpu.js';
import { PHASE_LOAD_HEADER, renderPhaseLoads, watchLoad, type PhaseLoad } from './load-watch.js';
import { REPO_ROOT } from './processes.js';
import { streamShards } from '../lib/shards.js';

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    capacity: { type: 'string' },
    clients: { type: 'string', default: '100' },
    'ramp-start': { type: 'string', default: '500' },
    step: { type: 'string', default: '5' },
    'delivery-slo': { type: 'string', default: '2000' },
    'shed-mode': { type: 'string', default: 'enforce' },
    // SHED_TARGET_P99_MS of the overloaded Floodgate (critical's target is half of it): on a machine whose idle
    // p99 is already past the default 50 ms, the default target sheds at every level, ½C included.
    'target-p99': { type: 'string' },
    // SHED_BUSY_LOOP_PERCENT of the overloaded Floodgate (0: latency counts whatever the API's loop does).
    'busy-loop': { type: 'string' },
    'api-processes': { type: 'string', default: '1' },
    // `aged`: Redis has remembered idempotency keys for longer than the dedup horizon, as in a deployment up for more
    // than DEDUP_WINDOW_HOURS: the API answers keyed events from Redis alone. `fresh` (the default): a new Redis,
    // whose marker is younger than the horizon, so every keyed request also looks its keys up in Postgres.
    'dedup-marker': { type: 'string', default: 'fresh' },
    // The SDK's flushJitter (its default when not given): 0 sends every batch after exactly flushIntervalMs.
    'flush-jitter': { type: 'string' },
    'database-url': { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/floodgate_clientbench' },
    out: { type: 'string', default: `${REPO_ROOT}bench/reports` },
  },
});

/**
 * Runs the scenario against a Floodgate started in `mode`, reading every role's CPU each second and what drove
 * the shedder (GET /v1/admin/load and the refusals by reason) every 250 ms.
 */
async function runWith(bench: BenchEnv, mode: string, options: Omit<ClientsScenarioOptions, 'url'>, adminKey: string) {
  const redisPid = Number(/^process_id:(\d+)/m.exec(await bench.redis.info('server'))?.[1]) || undefined;
  const target: Record<string, string> = {
    ...(args['target-p99'] ? { SHED_TARGET_P99_MS: args['target-p99'] } : {}),
    ...(args['busy-loop'] !== undefined ? { SHED_BUSY_LOOP_PERCENT: args['busy-loop'] } : {}),
  };
  if (args['dedup-marker'] === 'aged') {
    const aged = String(Date.now() - dedupHorizonMs(bench.config.dedupWindowHours) - 60_000);
    for (const s of streamShards(bench.config)) await bench.redis.set(dedupMarkerKey(s.streamKey), aged);
  }
  const floodgate = await startFloodgate(bench, { env: { SHED_MODE: mode, ...target } });
  const seconds: CpuSecond[] = [];
  let phase = 'start';
  const watch = watchLoad({ url: floodgate.url, metricsUrl: floodgate.metricsUrl, adminKey, phase: () => phase });
  let loads: PhaseLoad[] = [];
  try {
    const meter = createCpuMeter({
      api: floodgate.apiPid,
      worker: floodgate.workerPid ?? undefined,
      redis: redisPid,
      postgresComm: 'postgres',
    });
    const { report } = await runClientsScenario({
      ...options,
      url: floodgate.url,
      // The worker keeps up when the stream backlog does not grow: every shard's stream together.
      streamBacklog: async () => {
        const lengths = await Promise.all(streamShards(bench.config).map((s) => bench.redis.xlen(s.streamKey)));
        return lengths.reduce((a, b) => a + b, 0);
      },
      onPhase: (label) => (phase = label),
      onSecond: (s) => seconds.push({ segment: s.phase, admitted: s.accepted, refused: s.requests - s.accepted, ...meter.tick() }),
    });
    loads = await watch.stop();
    return { report, seconds, loads };
  } finally {
    if (loads.length === 0) await watch.stop();
    await floodgate.stop();
  }
}

const bench = await createBenchEnv('clientbench', args['database-url'], { API_PROCESSES: args['api-processes'] });
const { key } = await createApiKey(bench.pool, { tenant: 'clientbench' });
const { key: adminKey } = await createApiKey(bench.pool, { tenant: 'clientbench', scopes: ['admin'] });
const common = {
  key,
  databaseUrl: bench.databaseUrl,
  seed: 1,
  clients: Number(args.clients),
  duration: Number(args.duration),
  rampStart: Number(args['ramp-start']),
  stepSeconds: Number(args.step),
  deliverySloMs: Number(args['delivery-slo']),
  drainTimeoutMs: 180_000,
  closeTimeoutMs: 30_000,
  progress: true,
  sdk: args['flush-jitter'] === undefined ? {} : { flushJitter: Number(args['flush-jitter']) },
};
let ramp: Awaited<ReturnType<typeof runWith>> | null = null;
let overload: Awaited<ReturnType<typeof runWith>>;
try {
  let capacity = args.capacity ? Number(args.capacity) : undefined;
  if (!capacity) {
    console.error('\n== C: ramp with SHED_MODE=off');
    ramp = await runWith(bench, 'off', { ...common, rampOnly: true }, adminKey);
    capacity = ramp.report.capacity?.capacity ?? undefined;
    if (!capacity) {
      console.log(renderClientsMarkdown(ramp.report));
      throw new Error(
        `no ramp step kept up (delivery p99 ≤ ${args['delivery-slo']} ms, nothing lost, no growing backlog): lower --ramp-start`,
      );
    }
    console.error(`C = ${capacity} events/s`);
  }
  console.error(`\n== overload with SHED_MODE=${args['shed-mode']}`);
  overload = await runWith(bench, args['shed-mode'], { ...common, capacity }, adminKey);
} finally {
  await bench.close();
}

const share = (v: number) => `${Math.round(v * 100)} %`;
const cpuRows = [...(ramp ? [{ run: 'off', seconds: ramp.seconds }] : []), { run: args['shed-mode'], seconds: overload.seconds }].flatMap(
  ({ run, seconds }) =>
    [...new Set(seconds.map((s) => s.segment))].map((phase) => {
      const c = cpuShares(seconds, phase);
      return `| ${run} | ${phase} | ${share(c.api)} | ${share(c.generator)} | ${share(c.worker)} | ${share(c.redis)} | ${share(c.postgres)} | ${share(c.total)} |`;
    }),
);
const steps = ramp?.report.capacity?.steps ?? [];
const integrity = (r: typeof overload.report) =>
  'ok' in r.integrity
    ? `${r.integrity.ok ? 'OK' : 'FAILED'}: ${r.integrity.acknowledged} delivered, ${r.integrity.missing} missing, ${r.integrity.duplicated} duplicated`
    : 'skipped';
const m = machine();
const markdown = `${renderClientsMarkdown(overload.report)}
${
  ramp
    ? `Ramp with SHED_MODE=off (C = ${ramp.report.capacity?.capacity} events/s; integrity ${integrity(ramp.report)}):

| Step | Offered events/s | Tracked/s | Delivered/s | Delivery p99 | Clients hold at the end | Stream backlog growth | Kept up |
| --- | --- | --- | --- | --- | --- | --- | --- |
${steps.map((s) => `| ${s.label} | ${s.offered} | ${s.tracked} | ${s.delivered} | ${Math.round(s.p99Ms)} ms | ${s.heldAtEnd} | ${s.workerBacklogGrowth ?? '-'} | ${s.ok ? 'yes' : 'no'} |`).join('\n')}
`
    : `C = ${args.capacity} events/s given with --capacity.`
}
Command: \`npm run bench:clients -- ${process.argv.slice(2).join(' ')}\` on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC; ${m.cpus} × ${m.model}, ${m.memGiB} GiB, node ${m.node};
overload with SHED_MODE=${args['shed-mode']}${args['target-p99'] ? ` and SHED_TARGET_P99_MS=${args['target-p99']}` : ''}${args['busy-loop'] !== undefined ? ` and SHED_BUSY_LOOP_PERCENT=${args['busy-loop']}` : ''}, API_PROCESSES=${args['api-processes']}; ${args.clients} simulated SDK clients in the benchmark's process (default SDK options:
batches of up to 100 events or 1 s, one lane per class, full-jitter backoff, adaptive throttling), 20/30/50 critical/normal/low.

Where the CPU went (share of one core, mean over the phase, from /proc; "generator" is the benchmark process, i.e.
the simulated clients; "Postgres" is every postgres process on the machine, other databases' included):

| SHED_MODE | Phase | API | Generator (clients) | Worker | Redis | Postgres | All |
| --- | --- | --- | --- | --- | --- | --- | --- |
${cpuRows.join('\n')}

What drove the shedder (GET /v1/admin/load and the refusal counters, read every 250 ms): refusals by reason;
the share of readings with a shed level above 0 (and the mean level); of those, which signal set the level (the
highest of each class's p99 over its target and the event-loop delay over its target, or the stream backlog's
floor); each signal's mean and highest pressure (1 = at target); the highest p99 per class; the stream
backlog; the non-critical in-flight limit's lowest value and the most requests waiting for it:

${PHASE_LOAD_HEADER}
${renderPhaseLoads(args['shed-mode'], overload.loads).join('\n')}
`;
console.log(`\n${markdown}`);
await mkdir(args.out, { recursive: true });
const file = join(args.out, `client-overload-${new Date().toISOString().replace(/[:.]/g, '-')}`);
await writeFile(`${file}.md`, markdown);
await writeFile(
  `${file}.json`,
  JSON.stringify(
    { machine: m, args, ramp: ramp?.report ?? null, overload: overload.report, cpu: overload.seconds, shedder: overload.loads },
    null,
    2,
  ),
);
console.log(`report: ${file}.md`);
process.exit(overload.report.problems.length > 0 ? 1 : 0);
