// `npm run bench:shedding`: the load shedding benchmark (issue 4), in one run.
//   1. start Floodgate (API + worker, private database and stream keys) with SHED_MODE=off;
//   2. find C: ramp until p99 > --slo-p99 or ≥ 1 % failures (skipped with --capacity);
//   3. offer ½C (unloaded), 2×C, 4×C, then ½C again (recovery) with 20/30/50 critical/normal/low;
//   4. restart Floodgate with SHED_MODE=enforce and offer the same;
//   5. per mode: goodput vs C, critical success, accepted p99 vs unloaded p99, share of shed from low, time to
//      recover, the API's highest RSS and event-loop delay, and the integrity check; a Markdown table.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createApiKey } from '../lib/api-keys.js';
import { createBenchEnv, startFloodgate } from './bench-env.js';
import { REPO_ROOT } from './processes.js';
import { machine, type Report } from './report.js';
import { runScenario, type LoadtestOptions } from './run-scenario.js';
import { watchProcess } from './scrape.js';

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '20' },
    capacity: { type: 'string' },
    connections: { type: 'string', default: '500' },
    timeout: { type: 'string', default: '5' },
    'slo-p99': { type: 'string', default: '50' },
    'ramp-start': { type: 'string', default: '200' },
    'api-processes': { type: 'string', default: '1' },
    'database-url': { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/floodgate_shedbench' },
    out: { type: 'string', default: `${REPO_ROOT}loadtest/reports` },
  },
});
const sloP99Ms = Number(args['slo-p99']);

interface ModeResult {
  mode: 'off' | 'enforce';
  capacity: number;
  report: Report;
  resources: Awaited<ReturnType<ReturnType<typeof watchProcess>['stop']>>;
}

const bench = await createBenchEnv('shedbench', args['database-url'], { API_PROCESSES: args['api-processes'] });
const { key } = await createApiKey(bench.pool, { tenant: 'shedbench' });
const common: Omit<LoadtestOptions, 'scenario' | 'url'> = {
  key,
  seed: 1,
  databaseUrl: bench.databaseUrl,
  timeoutSeconds: Number(args.timeout),
  sloP99Ms,
  drainTimeoutMs: 180_000,
  progress: true,
  out: args.out,
};

async function runMode(mode: 'off' | 'enforce', knownCapacity: number | undefined): Promise<ModeResult> {
  console.error(`\n== SHED_MODE=${mode}`);
  const floodgate = await startFloodgate(bench, { env: { SHED_MODE: mode } });
  try {
    let capacity = knownCapacity;
    if (!capacity) {
      const { report } = await runScenario({ ...common, scenario: 'ramp', url: floodgate.url, rate: Number(args['ramp-start']), stepSeconds: 5, duration: 200 });
      capacity = report.capacity?.capacity ?? undefined;
      if (!capacity) throw new Error(`no ramp step kept p99 ≤ ${sloP99Ms} ms: lower --ramp-start`);
      console.error(`C = ${capacity} req/s`);
      await new Promise((r) => setTimeout(r, 5000));
    }
    const watch = watchProcess(floodgate.metricsUrl);
    const { report } = await runScenario({ ...common, scenario: 'overload', url: floodgate.url, capacity, duration: Number(args.duration), connections: Number(args.connections) });
    return { mode, capacity, report, resources: await watch.stop() };
  } finally {
    await floodgate.stop();
  }
}

let results: ModeResult[];
try {
  const off = await runMode('off', args.capacity ? Number(args.capacity) : undefined);
  const enforce = await runMode('enforce', off.capacity);
  results = [off, enforce];
} finally {
  await bench.close();
}

const pct = (v: number | null) => (v === null ? '-' : `${v} %`);
const rows = results.flatMap(({ mode, report, resources }) => {
  const o = report.overload!;
  const integrity = 'ok' in report.integrity ? `${report.integrity.ok ? 'OK' : 'FAILED'}: ${report.integrity.acknowledged} acked, ${report.integrity.missing} missing, ${report.integrity.duplicated} duplicated` : 'skipped';
  return o.levels.map((l) =>
    [
      mode,
      `${l.level} (${l.offered}/s)`,
      `${Math.round(l.sentPerSec)}/s`,
      `${Math.round(l.goodputPerSec)}/s = ${l.goodputOverC}×C`,
      pct(l.criticalSuccessPct),
      `${l.acceptedP99Ms.toFixed(1)} ms (${o.unloadedP99Ms ? (l.acceptedP99Ms / o.unloadedP99Ms).toFixed(1) : '-'}× ${o.unloadedP99Ms.toFixed(1)} ms)`,
      pct(l.shedPct),
      pct(l.shedFromLowestPct),
      `${l.timeouts}`,
      o.recoverySeconds === null ? 'not within recovery' : `${o.recoverySeconds} s`,
      `${resources.maxRssMiB ?? '-'} MiB`,
      `${resources.maxEventLoopDelayP99Ms ?? '-'} ms`,
      integrity,
    ].join(' | '),
  );
});
const m = machine();
const markdown = `| Mode | Offered | Sent | Goodput (2xx within ${args.timeout} s) | Critical success | Accepted p99 (× unloaded) | Shed | Shed from low | Timeouts | Back to normal | API RSS max | Event-loop delay p99 max | Integrity |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
${rows.map((r) => `| ${r} |`).join('\n')}

C = ${results[0]!.capacity} req/s (highest ramp step with p99 ≤ ${sloP99Ms} ms and < 1 % failures, shedding off), 20/30/50 critical/normal/low,
${args.connections} connections, client timeout ${args.timeout} s, ${args.duration} s per level, API_PROCESSES=${args['api-processes']};
${m.cpus} × ${m.model}, ${m.memGiB} GiB, node ${m.node}. "Back to normal": seconds after the overload ends until every
following second has p99 ≤ ${sloP99Ms} ms and ≥ 99 % 2xx. "Sent" is below "Offered" when all connections wait for answers
(autocannon is closed-loop per connection). The load generator runs on the same cores as Floodgate.
Aims with enforce: goodput ≥ 0.9 C, critical success ≥ 99.9 %, accepted p99 ≤ 2× unloaded, > 95 % of shed from low, back to normal ≤ 5 s.
`;
console.log(`\n${markdown}`);
await mkdir(args.out, { recursive: true });
const file = join(args.out, `shedding-${new Date().toISOString().replace(/[:.]/g, '-')}`);
await writeFile(`${file}.md`, markdown);
await writeFile(`${file}.json`, JSON.stringify({ machine: m, args, results: results.map((r) => ({ mode: r.mode, capacity: r.capacity, resources: r.resources, overload: r.report.overload, integrity: r.report.integrity, runId: r.report.runId })) }, null, 2));
console.log(`report: ${file}.md`);
process.exit(0);
