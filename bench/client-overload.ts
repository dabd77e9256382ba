// `npm run bench:clients`: overload measured with real client behaviour, in one run.
//   1. start Floodgate (API + worker, private database and stream keys; shedding as configured, enforce by default);
//   2. the client model (loadtest/client-model.ts): --clients simulated applications, each with its own SDK client,
//      tracking a 20/30/50 critical/normal/low mix; ramp the offered events/s until delivery p99 > --delivery-slo:
//      that is C (skipped with --capacity);
//   3. ½C, 2×C, 4×C for --duration s each, then ½C again;
//   4. report delivered events/s vs 0.9 C, critical delivered within 10 s, drops per class, recovery, the
//      integrity check (every delivered event stored exactly once), and where the CPU went per phase.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createApiKey } from '../lib/api-keys.js';
import { renderClientsMarkdown } from '../loadtest/client-report.js';
import { machine } from '../loadtest/report.js';
import { runClientsScenario } from '../loadtest/run-clients.js';
import { createBenchEnv, startFloodgate } from './bench-env.js';
import { cpuShares, createCpuMeter, type CpuSecond } from './cpu.js';
import { REPO_ROOT } from './processes.js';

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    capacity: { type: 'string' },
    clients: { type: 'string', default: '100' },
    'ramp-start': { type: 'string', default: '1000' },
    step: { type: 'string', default: '5' },
    'delivery-slo': { type: 'string', default: '2000' },
    'shed-mode': { type: 'string', default: 'enforce' },
    'api-processes': { type: 'string', default: '1' },
    'database-url': { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/floodgate_clientbench' },
    out: { type: 'string', default: `${REPO_ROOT}bench/reports` },
  },
});

const bench = await createBenchEnv('clientbench', args['database-url'], { API_PROCESSES: args['api-processes'], SHED_MODE: args['shed-mode'] });
const { key } = await createApiKey(bench.pool, { tenant: 'clientbench' });
const redisPid = Number(/^process_id:(\d+)/m.exec(await bench.redis.info('server'))?.[1]) || undefined;
const floodgate = await startFloodgate(bench);
const seconds: CpuSecond[] = [];
let outcome: Awaited<ReturnType<typeof runClientsScenario>>;
try {
  const meter = createCpuMeter({ api: floodgate.apiPid, worker: floodgate.workerPid ?? undefined, redis: redisPid, postgresComm: 'postgres' });
  outcome = await runClientsScenario({
    url: floodgate.url,
    key,
    databaseUrl: bench.databaseUrl,
    seed: 1,
    clients: Number(args.clients),
    duration: Number(args.duration),
    ...(args.capacity ? { capacity: Number(args.capacity) } : {}),
    rampStart: Number(args['ramp-start']),
    stepSeconds: Number(args.step),
    deliverySloMs: Number(args['delivery-slo']),
    drainTimeoutMs: 180_000,
    closeTimeoutMs: 30_000,
    progress: true,
    onSecond: (s) => seconds.push({ segment: s.phase, admitted: s.accepted, refused: s.requests - s.accepted, ...meter.tick() }),
  });
} finally {
  await floodgate.stop();
  await bench.close();
}

const { report } = outcome;
const share = (v: number) => `${Math.round(v * 100)} %`;
const phases = [...new Set(seconds.map((s) => s.segment))].filter((p) => !p.startsWith('ramp') && p !== 'pause');
const cpuRows = phases.map((phase) => {
  const c = cpuShares(seconds, phase);
  return `| ${phase} | ${share(c.api)} | ${share(c.generator)} | ${share(c.worker)} | ${share(c.redis)} | ${share(c.postgres)} | ${share(c.total)} |`;
});
const m = machine();
const markdown = `${renderClientsMarkdown(report)}
Command: \`npm run bench:clients -- ${process.argv.slice(2).join(' ')}\` on ${new Date().toISOString().slice(0, 10)}; ${m.cpus} × ${m.model}, ${m.memGiB} GiB, node ${m.node};
SHED_MODE=${args['shed-mode']}, API_PROCESSES=${args['api-processes']}; ${args.clients} simulated SDK clients in the benchmark's process (default SDK options:
batches of up to 100 events or 1 s, one lane per class, full-jitter backoff, adaptive throttling), 20/30/50 critical/normal/low.

Where the CPU went (share of one core, mean over the phase, from /proc; "generator" is the benchmark process: the simulated clients):

| Phase | API | Generator (clients) | Worker | Redis | Postgres | All |
| --- | --- | --- | --- | --- | --- | --- |
${cpuRows.join('\n')}
`;
console.log(`\n${markdown}`);
await mkdir(args.out, { recursive: true });
const file = join(args.out, `client-overload-${new Date().toISOString().replace(/[:.]/g, '-')}`);
await writeFile(`${file}.md`, markdown);
await writeFile(`${file}.json`, JSON.stringify({ machine: m, args, report, cpu: seconds }, null, 2));
console.log(`report: ${file}.md`);
process.exit(report.problems.length > 0 ? 1 : 0);
