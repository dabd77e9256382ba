// `npm run bench:shedding`: the load shedding benchmark, in one run.
//   1. start Floodgate (API + worker, private database and stream keys) with SHED_MODE=off;
//   2. find C: ramp until p99 > --slo-p99 or ≥ 1 % failures (skipped with --capacity);
//   3. offer ½C (unloaded), 2×C, 4×C, then ½C again (recovery) with 20/30/50 critical/normal/low;
//   4. restart Floodgate with SHED_MODE=enforce and offer the same;
//   5. per mode: goodput vs C, critical success, accepted p99 vs unloaded p99, share of shed from low, time to
//      recover, the API's highest RSS and event-loop delay, and the integrity check; a Markdown table;
//   6. where the CPU went (API, load generator, worker, Redis, Postgres, read from /proc each second), what one
//      admitted and one refused request cost the API (fitted over those seconds), and from that the most goodput
//      one API process could give at each level: whether a shortfall is the controller's or the machine's.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createApiKey } from '../lib/api-keys.js';
import { createBenchEnv, startFloodgate } from './bench-env.js';
import { cpuShares, createCpuMeter, fitApiCosts, goodputCeiling, type CpuSecond } from './cpu.js';
import { REPO_ROOT } from './processes.js';
import { machine, type Report } from '../loadtest/report.js';
import { runScenario, type LoadtestOptions } from '../loadtest/run-scenario.js';
import { watchProcess, type ControllerReading } from './scrape.js';

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '20' },
    capacity: { type: 'string' },
    connections: { type: 'string', default: '500' },
    timeout: { type: 'string', default: '5' },
    'slo-p99': { type: 'string', default: '50' },
    'ramp-start': { type: 'string', default: '200' },
    'api-processes': { type: 'string', default: '1' },
    // `enforce` alone (with --capacity) is for trying a change quickly; the benchmark's table needs both.
    modes: { type: 'string', default: 'off,enforce' },
    // SHED_BUSY_LOOP_PERCENT of the Floodgate under test (its default when not given; 0 counts latency always).
    'busy-loop': { type: 'string' },
    'database-url': { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/floodgate_shedbench' },
    out: { type: 'string', default: `${REPO_ROOT}bench/reports` },
  },
});
const sloP99Ms = Number(args['slo-p99']);

interface ModeResult {
  mode: 'off' | 'enforce';
  capacity: number;
  report: Report;
  resources: Awaited<ReturnType<ReturnType<typeof watchProcess>['stop']>>;
  /** Each second of the overload run: the CPU every role spent and the controller as last scraped from the API. */
  seconds: Array<CpuSecond & { controller: ControllerReading }>;
}

/** The pid of the Redis server the bench writes to (it may be the machine's shared one). */
async function redisPid(): Promise<number | undefined> {
  const info = await bench.redis.info('server');
  const pid = /^process_id:(\d+)/m.exec(info)?.[1];
  return pid ? Number(pid) : undefined;
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
  const busy: Record<string, string> = args['busy-loop'] !== undefined ? { SHED_BUSY_LOOP_PERCENT: args['busy-loop'] } : {};
  const floodgate = await startFloodgate(bench, { env: { SHED_MODE: mode, ...busy } });
  try {
    let capacity = knownCapacity;
    if (!capacity) {
      const { report } = await runScenario({
        ...common,
        scenario: 'ramp',
        url: floodgate.url,
        rate: Number(args['ramp-start']),
        stepSeconds: 5,
        duration: 200,
      });
      capacity = report.capacity?.capacity ?? undefined;
      if (!capacity) throw new Error(`no ramp step kept p99 ≤ ${sloP99Ms} ms: lower --ramp-start`);
      console.error(`C = ${capacity} req/s`);
      await new Promise((r) => setTimeout(r, 5000));
    }
    const watch = watchProcess(floodgate.metricsUrl);
    const meter = createCpuMeter({
      api: floodgate.apiPid,
      worker: floodgate.workerPid ?? undefined,
      redis: await redisPid(),
      postgresComm: 'postgres',
    });
    const seconds: ModeResult['seconds'] = [];
    const { report } = await runScenario({
      ...common,
      scenario: 'overload',
      url: floodgate.url,
      capacity,
      duration: Number(args.duration),
      connections: Number(args.connections),
      onSample: (s) => {
        const admitted = s.total.ok;
        const refused = s.total.requests - s.total.ok;
        seconds.push({ segment: s.segment, admitted, refused, ...meter.tick(), controller: watch.controller() });
      },
    });
    return { mode, capacity, report, resources: await watch.stop(), seconds };
  } finally {
    await floodgate.stop();
  }
}

const modes = args.modes.split(',').map((m) => m.trim());
if (modes.length === 0 || modes.some((m) => m !== 'off' && m !== 'enforce'))
  throw new Error(`--modes takes off and/or enforce, got "${args.modes}"`);
if (!modes.includes('off') && !args.capacity) throw new Error('without the off mode there is no ramp to find C: give --capacity');
const results: ModeResult[] = [];
try {
  let capacity = args.capacity ? Number(args.capacity) : undefined;
  for (const mode of modes as Array<'off' | 'enforce'>) {
    const result = await runMode(mode, capacity);
    capacity = result.capacity;
    results.push(result);
  }
} finally {
  await bench.close();
}

const pct = (v: number | null) => (v === null ? '-' : `${v} %`);
/** Mean of the normal class's shed probability over a level's seconds. */
const meanNormalShed = (seconds: ModeResult['seconds'], level: string) => {
  const values = seconds.flatMap((s) =>
    s.segment === level && s.controller.normalShedProbability !== null ? [s.controller.normalShedProbability] : [],
  );
  return values.length === 0 ? '-' : (values.reduce((a, b) => a + b, 0) / values.length).toFixed(2);
};
const rows = results.flatMap(({ mode, report, resources, seconds }) => {
  const o = report.overload!;
  const integrity =
    'ok' in report.integrity
      ? `${report.integrity.ok ? 'OK' : 'FAILED'}: ${report.integrity.acknowledged} acked, ${report.integrity.missing} missing, ${report.integrity.duplicated} duplicated`
      : 'skipped';
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
      mode === 'off' ? '-' : meanNormalShed(seconds, l.level),
      `${l.timeouts}`,
      `${o.recoverySeconds === null ? 'not within recovery' : `${o.recoverySeconds} s`} (${o.servingAgainSeconds === null ? '-' : `${o.servingAgainSeconds} s`})`,
      `${resources.maxRssMiB ?? '-'} MiB`,
      `${resources.maxEventLoopDelayP99Ms ?? '-'} ms`,
      integrity,
    ].join(' | '),
  );
});
const share = (v: number) => `${Math.round(v * 100)} %`;
const cpuRows = results.flatMap(({ mode, report, seconds }) =>
  ['unloaded ½C', '2×C', '4×C'].map((segment) => {
    const c = cpuShares(seconds, segment);
    const seg = report.segments.find((x) => x.label === segment);
    const answered = seg ? seg.total.requestsPerSec : 0;
    const apiPerAnswer = answered > 0 ? `${Math.round((c.api * 1e6) / answered)} µs` : '-';
    return [
      mode,
      segment,
      `${Math.round(answered)}/s`,
      share(c.api),
      apiPerAnswer,
      share(c.generator),
      share(c.worker),
      share(c.redis),
      share(c.postgres),
      share(c.total),
    ].join(' | ');
  }),
);
// Fitted over the overloaded seconds of every mode: off gives admitted-only seconds, enforce mixed ones.
const OVERLOADED = new Set(['2×C', '4×C']);
const costs = fitApiCosts(results.flatMap((r) => r.seconds.filter((s) => OVERLOADED.has(s.segment))));
const capacityC = results[0]!.capacity;
// The ceilings are about what enforce could do at its levels.
const enforceLevels = results.find((r) => r.mode === 'enforce')?.report.overload?.levels ?? [];
const ceilings = costs
  ? enforceLevels.map((l) => {
      const atOffered = goodputCeiling(costs, l.offered ?? 0);
      const atSent = goodputCeiling(costs, l.sentPerSec);
      return `${l.level}: ${(atOffered / capacityC).toFixed(2)}×C at the offered ${l.offered}/s, ${(atSent / capacityC).toFixed(2)}×C at the ${Math.round(l.sentPerSec)}/s this run's generator sent`;
    })
  : [];
const costLine = costs
  ? `API cost fitted over the ${costs.seconds} overloaded seconds (2×C and 4×C, ${results.map((r) => r.mode).join(' and ')}; API CPU per second = A × admitted + R × refused): ` +
    `A = ${costs.admittedMicros} µs per admitted request, R = ${costs.refusedMicros ?? '-'} µs per refusal` +
    (costs.refusedMicros !== null ? ` (R/A = ${(costs.refusedMicros / costs.admittedMicros).toFixed(2)})` : '') +
    `. Most goodput one API process could give if it had a whole core ` +
    `and every request it does not admit were refused at cost R: ${ceilings.join('; ')}.`
  : 'API costs: not enough seconds to fit.';
const m = machine();
const markdown = `| Mode | Offered | Sent | Goodput (2xx within ${args.timeout} s) | Critical success | Accepted p99 (× unloaded) | Shed | Shed from low | Normal shed probability (mean) | Timeouts | Back to normal (shedding stopped) | API RSS max | Event-loop delay p99 max | Integrity |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
${rows.map((r) => `| ${r} |`).join('\n')}

C = ${results[0]!.capacity} req/s (highest ramp step with p99 ≤ ${sloP99Ms} ms and < 1 % failures, shedding off), 20/30/50 critical/normal/low,
${args.connections} connections, client timeout ${args.timeout} s, ${args.duration} s per level, API_PROCESSES=${args['api-processes']};
${m.cpus} × ${m.model}, ${m.memGiB} GiB, node ${m.node}. "Back to normal": seconds after the overload ends until every
following second has p99 ≤ ${sloP99Ms} ms and ≥ 99 % 2xx. "Sent" is below "Offered" when all connections wait for answers
(autocannon is closed-loop per connection). The load generator runs on the same cores as Floodgate.
Aims with enforce: goodput ≥ 0.9 C, critical success ≥ 99.9 %, accepted p99 ≤ 2× unloaded, > 95 % of shed from low, back to normal ≤ 5 s.
"Back to normal" is followed by the seconds until shedding stopped (every second ≥ 99 % 2xx, whatever its latency).

Where the CPU went (share of one core, mean over the level's seconds, from /proc; the machine has ${m.cpus}):

| Mode | Level | Answered | API | API per answer | Load generator | Worker | Redis | Postgres | All |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
${cpuRows.map((r) => `| ${r} |`).join('\n')}

${costLine}
`;
console.log(`\n${markdown}`);
await mkdir(args.out, { recursive: true });
const file = join(args.out, `shedding-${new Date().toISOString().replace(/[:.]/g, '-')}`);
await writeFile(`${file}.md`, markdown);
await writeFile(
  `${file}.json`,
  JSON.stringify(
    {
      machine: m,
      args,
      costs,
      results: results.map((r) => ({
        mode: r.mode,
        capacity: r.capacity,
        resources: r.resources,
        overload: r.report.overload,
        integrity: r.report.integrity,
        runId: r.report.runId,
        seconds: r.seconds,
      })),
    },
    null,
    2,
  ),
);
console.log(`report: ${file}.md`);
process.exit(0);
