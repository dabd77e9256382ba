// `npm run bench:profile`: where one API process spends its CPU. Runs `floodgate api` (one process, built, under
// `node --cpu-prof`) with a worker, and a bare node:http server under the same profiler, each at the same fixed
// request rate (autocannon, open loop), in three phases: single events, batches of 100, and refusals (low-class
// requests refused 503 overloaded, every one of them, by a backlog past the high watermark and then the open low
// gate, from a key already cached).
// Each phase gets a fresh API process and so its own .cpuprofile; CPU per request is read from /proc around the
// measured window, as bench/cpu.ts does. `bench/profile-breakdown.ts` turns the profiles into areas.
// The profiler's own CPU counts in the process's, more in the API's than in the bare server's: CPU figures are
// best read with --no-profile, and with --rounds on a machine whose other load varies (see docs/benchmarks.md).
// --instructions counts instructions under valgrind's callgrind instead of reading CPU time (bench/instructions.ts):
// each window is a fixed number of requests sent by a closed loop, and the count does not depend on the machine's
// other load.
import autocannon from 'autocannon';
import { mkdir, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createApiKey } from '../lib/api-keys.js';
import { createBenchEnv } from './bench-env.js';
import { processCpuMicros } from './cpu.js';
import { FLOODGATE_BIN, freePort, startNode, waitForOk, type Child } from './processes.js';
import { createEventSource } from '../loadtest/events.js';
import { machine } from '../loadtest/report.js';
import { INGEST_ROUTE } from '../app/routes/events.js';
import { reportRun } from './profile-breakdown.js';
import { callgrindAvailable, startCounted, type CountedChild } from './instructions.js';

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '15' },
    warmup: { type: 'string', default: '3' },
    rate: { type: 'string', default: '1500' },
    'batch-rate': { type: 'string', default: '150' },
    connections: { type: 'string', default: '20' },
    out: { type: 'string', default: '/tmp/floodgate-profile' },
    // Without the profiler: its sampling costs CPU every millisecond whatever the load, which at the batch
    // phase's 150 req/s adds hundreds of µs to every request of the API and of the bare server alike.
    'no-profile': { type: 'boolean', default: false },
    phases: { type: 'string', default: 'single,batch,refusal' },
    // Measured windows per target, taken in turns (bare, API, bare, API…) while all of them run: on a machine
    // whose other load comes and goes, each target then sees about the same share of it.
    rounds: { type: 'string', default: '1' },
    // Another build's bin/floodgate.js, measured in the same turns as this one ("baseline"): before and after.
    'baseline-bin': { type: 'string' },
    // Instructions under callgrind instead of CPU time: windows of a fixed number of requests, closed loop.
    instructions: { type: 'boolean', default: false },
    // Requests per measured window in --instructions (a batch phase sends a tenth as many), and before them.
    requests: { type: 'string', default: '2000' },
    'warmup-requests': { type: 'string', default: '1000' },
    // Connections of the closed loop in --instructions: few, so that requests reach the API one or two at a
    // time, as they do at the fixed rate of the CPU mode, rather than queued behind a 50 times slower process.
    'instr-connections': { type: 'string', default: '2' },
    // Seconds of an idle window after the measured ones in --instructions: the API's timers run by the clock,
    // and under callgrind each request takes some 50 times longer, so their instructions per second are
    // measured and taken out of the windows.
    idle: { type: 'string', default: '5' },
  },
});
const instructions = args.instructions;
if (instructions && !(await callgrindAvailable())) throw new Error('--instructions needs valgrind installed');
const rounds = Number(args.rounds);
const profile = !args['no-profile'] && !instructions;
const selected = new Set(args.phases.split(','));
const duration = Number(args.duration);
const warmup = Number(args.warmup);
const connections = Number(args.connections);
const runId = Date.now().toString(36);
const databaseName = `floodgate_profile_${runId}`;
const databaseUrl = `postgres://postgres@127.0.0.1:5432/${databaseName}`;

interface Phase {
  readonly name: string;
  readonly batchSize: number;
  readonly rate: number;
  readonly priority: 'normal' | 'low';
  readonly env: Record<string, string>;
}

/** One target under one phase, as results.json holds it. */
export interface Measured {
  readonly name: string;
  readonly target: string;
  readonly requests: number;
  readonly events: number;
  readonly status: Record<string, number>;
  /** What `cost` counts: CPU time from /proc, or instructions under callgrind (--instructions). */
  readonly unit: 'µs' | 'instructions';
  /** Over all measured windows; under callgrind, without the idle instructions (`idlePerSecond`) of their duration. */
  readonly cost: number;
  /** The measured window on the monotonic clock, in µs. */
  readonly window: { from: number; to: number };
  readonly perRequest: number;
  readonly perEvent: number;
  /** Cost per request of each window, in the order measured: the spread between rounds. */
  readonly perWindow: number[];
  /** Under callgrind: instructions per second of the idle target, taken out of `cost`. */
  readonly idlePerSecond?: number;
  readonly loadAverage: number[];
}

/** Load at `url`: fixed-rate for `seconds`, or (`amount`) that many requests from a closed loop; the answers by status. */
async function load(
  url: string,
  key: string,
  phase: Phase,
  size: { seconds: number } | { amount: number },
): Promise<{ requests: number; status: Record<string, number> }> {
  const source = createEventSource({ seed: 7, runId: `profile-${runId}`, batchSize: phase.batchSize });
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${key}`, 'x-priority': phase.priority };
  const requests = Array.from({ length: 100 }, () => ({ method: 'POST' as const, path: INGEST_ROUTE, headers, body: source.next().body }));
  const shape =
    'seconds' in size
      ? { connections, overallRate: phase.rate, duration: size.seconds, timeout: 10 }
      : { connections: Number(args['instr-connections']), amount: size.amount, timeout: 120 };
  const result = await autocannon({ url, requests, ...shape });
  const status: Record<string, number> = {};
  for (const [code, stats] of Object.entries(result.statusCodeStats ?? {})) status[code] = stats?.count ?? 0;
  if (result.errors) status.errors = result.errors;
  if (result.timeouts) status.timeouts = result.timeouts;
  return { requests: result.requests.total, status };
}

/** A running target: what `measure` loads and reads the CPU (or, counted, the instructions) of. */
interface Target {
  readonly name: string;
  readonly pid: number;
  readonly url: string;
  readonly counted?: CountedChild;
}

/** Requests per window of `phase` under --instructions (a tenth for batches), warm-up or measured. */
function amount(phase: Phase, warm: boolean): { amount: number } {
  const n = Number(warm ? args['warmup-requests'] : args.requests);
  return { amount: Math.max(1, Math.round(phase.batchSize > 1 ? n / 10 : n)) };
}

/** One measured window of a target: its CPU read from /proc on either side, or its instructions counted. */
async function window(target: Target, key: string, phase: Phase) {
  // The profiler's clock is CLOCK_MONOTONIC, as hrtime is: the window picks the measured samples out of the profile.
  const from = Number(process.hrtime.bigint() / 1000n);
  if (target.counted) {
    await target.counted.zero();
    const answered = await load(target.url, key, phase, amount(phase, false));
    const cost = await target.counted.count();
    return { ...answered, cost, from, to: Number(process.hrtime.bigint() / 1000n) };
  }
  const before = processCpuMicros(target.pid)!;
  const answered = await load(target.url, key, phase, { seconds: duration });
  const cost = processCpuMicros(target.pid)! - before;
  return { ...answered, cost, from, to: Number(process.hrtime.bigint() / 1000n) };
}

/** Instructions per second of a counted target left idle for --idle seconds. */
async function idleRate(counted: CountedChild): Promise<number> {
  const seconds = Number(args.idle);
  const from = performance.now();
  await counted.zero();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  const n = await counted.count();
  return n / ((performance.now() - from) / 1000);
}

/** Warm-up of each target, then `rounds` measured windows of each in turns; one result per target. */
async function measure(targets: Target[], key: string, phase: Phase): Promise<Measured[]> {
  for (const target of targets) await load(target.url, key, phase, instructions ? amount(phase, true) : { seconds: warmup });
  const windows = targets.map(() => [] as Awaited<ReturnType<typeof window>>[]);
  for (let r = 0; r < rounds; r++) for (const [i, target] of targets.entries()) windows[i]!.push(await window(target, key, phase));
  const idle = await Promise.all(targets.map((t) => (t.counted ? idleRate(t.counted) : Promise.resolve(undefined))));
  return targets.map((target, i) => summarise(target.name, phase, windows[i]!, idle[i]));
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/** A target's windows added up; under callgrind, each window without the idle instructions of its duration. */
function summarise(
  target: string,
  phase: Phase,
  windows: { requests: number; status: Record<string, number>; cost: number; from: number; to: number }[],
  idlePerSecond: number | undefined,
): Measured {
  const answered = { requests: 0, status: {} as Record<string, number> };
  let cost = 0;
  const perWindow: number[] = [];
  for (const w of windows) {
    const c = idlePerSecond === undefined ? w.cost : w.cost - (idlePerSecond * (w.to - w.from)) / 1e6;
    answered.requests += w.requests;
    cost += c;
    perWindow.push(Math.round((c / w.requests) * 10) / 10);
    for (const [code, n] of Object.entries(w.status)) answered.status[code] = (answered.status[code] ?? 0) + n;
  }
  const unit = idlePerSecond === undefined ? 'µs' : 'instructions';
  const m: Measured = {
    name: phase.name,
    target,
    requests: answered.requests,
    events: answered.requests * phase.batchSize,
    status: answered.status,
    unit,
    cost,
    window: { from: windows[0]!.from, to: windows.at(-1)!.to },
    perRequest: Math.round((cost / answered.requests) * 10) / 10,
    perEvent: Math.round((cost / (answered.requests * phase.batchSize)) * 100) / 100,
    perWindow,
    ...(idlePerSecond === undefined ? {} : { idlePerSecond: Math.round(idlePerSecond) }),
    loadAverage: loadavg().map((l) => Math.round(l * 100) / 100),
  };
  const spread =
    perWindow.length > 1 ? `  windows: median ${median(perWindow).toFixed(1)}, ${Math.min(...perWindow)}–${Math.max(...perWindow)}` : '';
  const idle = m.idlePerSecond === undefined ? '' : `  idle ${(m.idlePerSecond / 1e6).toFixed(2)} M/s`;
  console.log(
    `${phase.name.padEnd(22)} ${target.padEnd(9)} ${m.requests} req  ${JSON.stringify(m.status)}  ${m.perRequest} ${unit}/req  ${m.perEvent} ${unit}/event${spread}${idle}  load ${m.loadAverage.join(' ')}`,
  );
  return m;
}

/**
 * Starts node with the profiler writing into `dir` (or under callgrind with --instructions, its dumps there),
 * and waits until `readyUrl` answers.
 */
async function profiled(
  dir: string,
  script: string[],
  env: Record<string, string>,
  readyUrl: string,
): Promise<Child & { counted?: CountedChild }> {
  await mkdir(dir, { recursive: true });
  if (instructions) {
    const counted = await startCounted(dir, script, env);
    // Under callgrind, starting (and compiling the modules) takes a minute or more.
    await waitForOk(readyUrl, 300_000);
    return { ...counted, counted };
  }
  const child = startNode(profile ? ['--cpu-prof', '--cpu-prof-dir', dir, ...script] : script, env);
  await waitForOk(readyUrl, 30_000);
  return child;
}

const m = machine();
console.log(`floodgate API profile — ${m.cpus} × ${m.model}, node ${m.node}, ${new Date().toISOString()}`);
const bench = await createBenchEnv('profile', databaseUrl, { API_PROCESSES: '1', METRICS_PORT: '0' });
const { key } = await createApiKey(bench.pool, { tenant: 'profile' });
// The refusal phase's stream: no worker reads it, so its backlog stays at what is put in it here.
const refusalStream = `${bench.keyPrefix}refusal-events`;
const REFUSAL_BACKLOG = 2;
for (let i = 0; i < REFUSAL_BACKLOG; i++) await bench.redis.xadd(refusalStream, '*', 'backlog', String(i));
const phases: Phase[] = [
  { name: 'single event', batchSize: 1, rate: Number(args.rate), priority: 'normal', env: { SHED_TARGET_P99_MS: '60000' } },
  { name: 'batch of 100', batchSize: 100, rate: Number(args['batch-rate']), priority: 'normal', env: { SHED_TARGET_P99_MS: '60000' } },
  {
    name: 'refusal (503)',
    batchSize: 1,
    rate: Number(args.rate),
    priority: 'low',
    // Every low request refused early, none admitted: the API polls the backlog of a stream no worker reads, which
    // holds REFUSAL_BACKLOG entries, past the high watermark, so low traffic is shed entirely (reason `backlog`);
    // the low gate then opens at the next tick (GATE_OPEN_AFTER_MS=0) and stays open for the run (reason
    // `breaker`, no half-open trial through Koa). Refusals are answered at once (SHED_REFUSAL_DELAY_MS=0): a
    // held refusal holds its connection, and the fixed rate would then measure a trickle.
    env: {
      SHED_MODE: 'enforce',
      STREAM_KEY: refusalStream,
      SHED_BACKLOG_LOW_ENTRIES: '1',
      SHED_BACKLOG_HIGH_ENTRIES: String(REFUSAL_BACKLOG),
      GATE_OPEN_AFTER_MS: '0',
      GATE_RESET_TIMEOUT_MS: '3600000',
      SHED_REFUSAL_DELAY_MS: '0',
    },
  },
];
const results: Measured[] = [];
const out = join(args.out, runId);
const workerPort = await freePort();
const worker = startNode([FLOODGATE_BIN, 'worker'], { ...bench.env, WORKER_METRICS_PORT: String(workerPort) });
/** Targets running now: stopped by cleanUp should the run be interrupted. */
const running = new Set<Child>();
let cleaning: Promise<void> | undefined;
/** Stops every process this run started, deletes its stream keys and drops its database; once. */
function cleanUp(): Promise<void> {
  return (cleaning ??= (async () => {
    for (const child of running) await child.stop();
    await worker.stop();
    await bench.close();
    const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${databaseName} WITH (FORCE)`);
    await admin.end();
  })());
}
// A run cut short (a timeout, Ctrl-C) still stops its targets (under callgrind, they would outlive it) and cleans up.
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => void cleanUp().finally(() => process.exit(1)));
try {
  await waitForOk(`http://127.0.0.1:${workerPort}/metrics`);
  for (const [i, phase] of phases.entries()) {
    const slug = ['single', 'batch', 'refusal'][i]!;
    if (!selected.has(slug)) continue;
    const children: (Child & { counted?: CountedChild })[] = [];
    const targets: Target[] = [];
    try {
      const barePort = await freePort();
      const bareArgs = ['--import', 'tsx', 'bench/bare-server.ts', String(barePort)];
      const specs: { name: string; dir: string; script: string[]; env: Record<string, string>; url: string; ready: string }[] = [
        { name: 'bare', dir: `bare-${slug}`, script: bareArgs, env: {}, url: `http://127.0.0.1:${barePort}`, ready: '/' },
      ];
      for (const [name, bin] of [['floodgate', FLOODGATE_BIN], ...(args['baseline-bin'] ? [['baseline', args['baseline-bin']]] : [])]) {
        const port = await freePort();
        const env = { ...bench.env, SHED_MODE: 'enforce', ...phase.env, HOST: '127.0.0.1', PORT: String(port) };
        const dir = `${name === 'floodgate' ? 'api' : name}-${slug}`;
        specs.push({ name: name!, dir, script: [bin!, 'api'], env, url: `http://127.0.0.1:${port}`, ready: '/readyz' });
      }
      const start = async (spec: (typeof specs)[number]): Promise<Target> => {
        const child = await profiled(join(out, spec.dir), spec.script, spec.env, spec.url + spec.ready);
        children.push(child);
        running.add(child);
        return { name: spec.name, pid: child.process.pid!, url: spec.url, counted: child.counted };
      };
      // Rounds of one target each would only repeat its measurement: with one round, each runs alone, in turn.
      // In rounds, all run at once, started together (under callgrind, starting takes a minute each).
      if (rounds === 1) for (const spec of specs) results.push(...(await measure([await start(spec)], key, phase)));
      else targets.push(...(await Promise.all(specs.map(start))));
      if (targets.length > 0) results.push(...(await measure(targets, key, phase)));
    } finally {
      for (const child of children) {
        await child.stop();
        running.delete(child);
      }
    }
  }
} finally {
  await cleanUp();
}

await writeFile(join(out, 'results.json'), JSON.stringify({ machine: m, results }, null, 2));
console.log(await reportRun(out, profile));
console.log(`\nprofiles and results.json in ${out}`);
