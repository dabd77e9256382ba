// `npm run bench:class-latency`: critical traffic's latency while low-priority traffic floods, in one run.
//   1. start Floodgate (API + worker, private database and stream keys) once per configuration (--configs);
//   2. probe: critical requests at --probe-rate a second (open loop, its own keep-alive connections), first
//      unloaded for --unloaded s, then for --duration s while --connections connections flood the low class in
//      a closed loop from another process (bench/class-flood.ts), so the flood's event loop does not delay the
//      probe;
//   3. report critical p50/p99 unloaded and under the flood and their ratio (aim: p99 ≤ 2× unloaded), and where
//      the time went: the API's own time for critical requests, the XADD, the event-loop delay, what the flood
//      got (answered/s, shed), and the API's CPU.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createApiKey } from '../lib/api-keys.js';
import { machine } from '../loadtest/report.js';
import { createBenchEnv, startFloodgate, type StartedFloodgate } from './bench-env.js';
import { processCpuMicros } from './cpu.js';
import { timelineMarkdown, watchSeconds, type ProbeSample, type SecondReading } from './class-timeline.js';
import { freePort, REPO_ROOT } from './processes.js';
import { gauge, quantileBetween, scrape } from './scrape.js';

/** Configurations the benchmark can compare, each an environment for Floodgate. */
const CONFIGS: Record<string, Record<string, string>> = {
  // As before per-class targets: one target for every class, no limit on non-critical requests in flight.
  'one-target': { SHED_TARGET_P99_CRITICAL_MS: '50', SHED_NONCRITICAL_MAX_IN_FLIGHT: '0', SHED_REFUSAL_DELAY_MS: '0' },
  // The critical target alone, without the in-flight limit nor held refusals.
  'critical-target': { SHED_NONCRITICAL_MAX_IN_FLIGHT: '0', SHED_REFUSAL_DELAY_MS: '0' },
  // The critical target and the in-flight limit, refusals answered at once.
  'no-refusal-delay': { SHED_REFUSAL_DELAY_MS: '0' },
  // The shipped defaults: critical's own target, the adaptive in-flight limit, refusals held a second.
  defaults: {},
  // The defaults with critical's target at 10 ms instead of 25: about twice its unloaded p99 on a quiet machine.
  'critical-10ms': { SHED_TARGET_P99_CRITICAL_MS: '10' },
  // The defaults, the probe sending to CRITICAL_PORT (a free port picked at start) rather than PORT.
  'critical-port': { CRITICAL_PORT: 'free' },
  // Both: the 10 ms critical target, and the probe on CRITICAL_PORT.
  'critical-10ms-port': { SHED_TARGET_P99_CRITICAL_MS: '10', CRITICAL_PORT: 'free' },
  // The defaults with refusals held 250 ms instead of a second.
  'refusal-delay-250ms': { SHED_REFUSAL_DELAY_MS: '250' },
  // The in-flight limit alone: targets no flood reaches, so the controller refuses nothing and the limit holds
  // the flood back.
  'limit-only': { SHED_TARGET_P99_MS: '60000', SHED_TARGET_P99_CRITICAL_MS: '25', SHED_TARGET_EVENT_LOOP_DELAY_MS: '60000' },
};

const { values: args } = parseArgs({
  options: {
    unloaded: { type: 'string', default: '8' },
    duration: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '400' },
    'probe-rate': { type: 'string', default: '50' },
    configs: { type: 'string', default: 'one-target,no-refusal-delay,defaults' },
    // Another checkout of Floodgate, built (`npm run build`): configurations named `baseline:<config>` run it, so
    // that a change of code is compared with the code before it in the same run.
    baseline: { type: 'string' },
    'database-url': { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/floodgate_classbench' },
    out: { type: 'string', default: `${REPO_ROOT}bench/reports` },
  },
});
const configs = args.configs.split(',').map((c) => c.trim());
const BASELINE = 'baseline:';
/** The configuration's environment, and the build it runs (undefined: this checkout's). */
function configOf(name: string): { env: Record<string, string>; bin: string | undefined } {
  const baseline = name.startsWith(BASELINE);
  const env = CONFIGS[baseline ? name.slice(BASELINE.length) : name];
  if (!env) throw new Error(`--configs: unknown "${name}" (known: ${Object.keys(CONFIGS).join(', ')}, each also as ${BASELINE}<name>)`);
  if (baseline && !args.baseline) throw new Error(`--configs: "${name}" needs --baseline DIR (another checkout of Floodgate, built)`);
  return { env, bin: baseline ? join(resolve(args.baseline!), 'bin/floodgate.js') : undefined };
}
for (const c of configs) configOf(c);

/** Cumulative buckets of histogram `name`, summed over the series whose labels include every `match`. */
function buckets(text: string, name: string, match: Record<string, string>): Map<number, number> {
  const out = new Map<number, number>();
  const re = new RegExp(`^${name}_bucket\\{([^}]*)\\} (\\S+)$`, 'gm');
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const labels = m[1]!;
    if (!Object.entries(match).every(([k, v]) => labels.includes(`${k}="${v}"`))) continue;
    const le = /le="([^"]+)"/.exec(labels)?.[1];
    const bound = le === '+Inf' ? Infinity : Number(le);
    out.set(bound, (out.get(bound) ?? 0) + Number(m[2]));
  }
  return out;
}

/** The first seconds of a flood, while the controller and the limit have not reacted yet; reported apart. */
const ONSET_SECONDS = 2;
const quantile = (sorted: readonly number[], q: number) =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;

interface ProbeResult {
  /** Every request: when it was sent, its latency, its connection set-up (the timeline's raw material). */
  samples: ProbeSample[];
  /** Latencies of the 2xx answers, ms. */
  latencies: number[];
  /** Latencies of the 2xx answers to requests sent once the phase had run ONSET_SECONDS (the steady state), ms. */
  steady: number[];
  /** Requests that had to open a connection (every probe socket was busy): their time includes the TCP set-up. */
  newConnections: number;
  sent: number;
  ok: number;
  refused: number;
  failed: number;
  p50: number;
  p99: number;
  max: number;
}

/** Critical requests at `rate` a second for `seconds`, each timed from send to the end of its answer. */
async function probe(url: string, key: string, rate: number, seconds: number): Promise<ProbeResult> {
  // No cap on sockets: a capped pool would queue the probe's own requests and time that wait as the server's.
  const agent = new Agent({ keepAlive: true });
  const body = JSON.stringify({ type: 'probe', source: 'bench', data: { class: 'critical' } });
  const latencies: number[] = [];
  const steady: number[] = [];
  let sent = 0;
  let refused = 0;
  let failed = 0;
  let newConnections = 0;
  const samples: ProbeSample[] = [];
  const pending = new Set<Promise<void>>();
  const startedAt = performance.now();
  const one = () =>
    new Promise<void>((resolve) => {
      const started = performance.now();
      const at = started - startedAt;
      const settled = at >= ONSET_SECONDS * 1000;
      let connectMs: number | null = null;
      let headersMs = NaN;
      const req = request(
        `${url}/v1/events`,
        {
          method: 'POST',
          agent,
          timeout: 10_000,
          headers: {
            authorization: `Bearer ${key}`,
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            'x-priority': 'critical',
          },
        },
        (res) => {
          headersMs = performance.now() - started;
          if (!req.reusedSocket) newConnections++;
          res.resume();
          res.on('end', () => {
            const ms = performance.now() - started;
            const ok = res.statusCode! < 300;
            samples.push({ at, ms, headersMs, connectMs, outcome: ok ? 'ok' : 'refused' });
            if (ok) {
              latencies.push(ms);
              if (settled) steady.push(ms);
            } else refused++;
            resolve();
          });
        },
      );
      req.on('socket', (socket) => {
        if (socket.connecting) socket.once('connect', () => (connectMs = performance.now() - started));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => {
        failed++;
        samples.push({ at, ms: NaN, headersMs: NaN, connectMs, outcome: 'failed' });
        resolve();
      });
      req.end(body);
    });
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      // Open loop: the number due by now, whatever the earlier ones are doing.
      const due = Math.floor(((performance.now() - startedAt) / 1000) * rate);
      while (sent < due) {
        sent++;
        const p = one();
        pending.add(p);
        void p.then(() => pending.delete(p));
      }
      if (performance.now() - startedAt >= seconds * 1000) {
        clearInterval(timer);
        resolve();
      }
    }, 5);
  });
  await Promise.all(pending);
  agent.destroy();
  const sorted = latencies.sort((a, b) => a - b);
  return {
    samples: samples.sort((a, b) => a.at - b.at),
    latencies: sorted,
    steady: steady.sort((a, b) => a - b),
    newConnections,
    sent,
    ok: sorted.length,
    refused,
    failed,
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    max: sorted.at(-1) ?? NaN,
  };
}

interface FloodResult {
  requests: number;
  perSec: number;
  statuses: Record<string, number>;
  errors: number;
  timeouts: number;
}

/**
 * The low-class flood in its own process, started ahead: `start` sets it off once it is loaded, so that loading it
 * (compiling TypeScript takes about a second of CPU) does not fall into the flood's first second.
 */
async function prepareFlood(url: string, key: string, connections: number, seconds: number): Promise<{ start(): Promise<FloodResult> }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(REPO_ROOT, 'bench/class-flood.ts'), url, key, 'low', String(connections), String(seconds)],
    { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<FloodResult>((resolve, reject) => {
    child.once('exit', (code) => {
      try {
        if (code !== 0) throw new Error(`class-flood exited ${code}`);
        resolve(JSON.parse(out.trim().split('\n').at(-1)!) as FloodResult);
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });
  // Fails the wait as well when the child exits before it is ready.
  await Promise.race([
    new Promise<void>((resolve) => {
      const ready = () => {
        if (!out.includes('ready\n')) return;
        child.stdout.off('data', ready);
        resolve();
      };
      child.stdout.on('data', ready);
    }),
    exited.then(() => {
      throw new Error('class-flood exited before it was ready');
    }),
  ]);
  return {
    start() {
      child.stdin.end('go\n');
      return exited;
    },
  };
}

/** The kernel's count of connections dropped because a listen queue was full (machine-wide), or null. */
function listenOverflows(): number | null {
  try {
    const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n');
    const header = lines.findIndex((l) => l.startsWith('TcpExt:') && l.includes('ListenOverflows'));
    const names = lines[header]!.split(/\s+/);
    const values = lines[header + 1]!.split(/\s+/);
    return Number(values[names.indexOf('ListenOverflows')]);
  } catch {
    return null;
  }
}

interface Phase {
  /** Connections the kernel dropped for a full listen queue during the phase, machine-wide (null: not on Linux). */
  listenOverflows: number | null;
  probe: ProbeResult;
  /** The API's own time for critical requests (from Koa's first middleware to the answer), p50/p99 ms. */
  serverP50: number | null;
  serverP99: number | null;
  /** XADD as the API saw it, every class, p50/p99 ms. */
  xaddP50: number | null;
  xaddP99: number | null;
  /** Event-loop delay p99 (Node's monitor) averaged over the phase's seconds, and its highest, ms. */
  loopDelayMean: number | null;
  loopDelayMax: number | null;
  /** Low requests refused (503) by the shedder during the phase. */
  lowShed: number;
  /** The API's CPU, share of one core. */
  apiCpu: number;
  flood: FloodResult | null;
  /** GET /v1/admin/load at the end of the phase. */
  load: unknown;
  /** The API, the probe's process and the machine, second by second. */
  seconds: SecondReading[];
}

async function phase(
  floodgate: StartedFloodgate,
  probeUrl: string,
  keys: { probe: string; flood: string; admin: string },
  seconds: number,
  connections: number,
): Promise<Phase> {
  const flooding = connections > 0 ? await prepareFlood(floodgate.url, keys.flood, connections, seconds) : null;
  const before = await scrape(floodgate.metricsUrl);
  const overflowsBefore = listenOverflows();
  const cpuBefore = processCpuMicros(floodgate.apiPid) ?? 0;
  const wallBefore = performance.now();
  const timeline = watchSeconds(floodgate.metricsUrl, floodgate.apiPid);
  const lags: number[] = [];
  const watcher = setInterval(() => {
    void scrape(floodgate.metricsUrl).then(
      (text) => {
        const lag = gauge(text, 'nodejs_eventloop_lag_p99_seconds');
        if (lag !== null) lags.push(lag * 1000);
      },
      () => {},
    );
  }, 1000);
  const [probeResult, floodResult] = await Promise.all([
    probe(probeUrl, keys.probe, Number(args['probe-rate']), seconds),
    flooding ? flooding.start() : Promise.resolve(null),
  ]);
  clearInterval(watcher);
  const timelineSeconds = await timeline.stop();
  const apiCpu = ((processCpuMicros(floodgate.apiPid) ?? 0) - cpuBefore) / ((performance.now() - wallBefore) * 1000);
  const after = await scrape(floodgate.metricsUrl);
  const server = (q: number) => {
    const name = 'floodgate_http_request_duration_seconds';
    const v = quantileBetween(buckets(before, name, { priority: 'critical' }), buckets(after, name, { priority: 'critical' }), q);
    return v === null ? null : v * 1000;
  };
  const xadd = (q: number) => {
    const name = 'floodgate_redis_write_duration_seconds';
    const v = quantileBetween(buckets(before, name, { outcome: 'ok' }), buckets(after, name, { outcome: 'ok' }), q);
    return v === null ? null : v * 1000;
  };
  const shed = (text: string) => {
    let n = 0;
    for (const m of text.matchAll(/^floodgate_shed_requests_total\{([^}]*)\} (\S+)$/gm))
      if (m[1]!.includes('priority="low"')) n += Number(m[2]);
    return n;
  };
  const load = await fetch(`${floodgate.url}/v1/admin/load`, { headers: { authorization: `Bearer ${keys.admin}` } }).then(
    (r) => r.json(),
    () => null,
  );
  const overflowsAfter = listenOverflows();
  return {
    listenOverflows: overflowsBefore === null || overflowsAfter === null ? null : overflowsAfter - overflowsBefore,
    probe: probeResult,
    serverP50: server(0.5),
    serverP99: server(0.99),
    xaddP50: xadd(0.5),
    xaddP99: xadd(0.99),
    loopDelayMean: lags.length ? lags.reduce((a, b) => a + b, 0) / lags.length : null,
    loopDelayMax: lags.length ? Math.max(...lags) : null,
    lowShed: shed(after) - shed(before),
    apiCpu,
    flood: floodResult,
    load,
    seconds: timelineSeconds,
  };
}

// One Floodgate per configuration, all started at once (each with its own stream keys), and the phases
// interleaved round by round: on a shared machine whose load changes from minute to minute, comparing
// configurations measured minutes apart would compare the machine's moods.
const benches = [];
for (const [i] of configs.entries()) benches.push(await createBenchEnv(`classbench${i}`, args['database-url'], { API_PROCESSES: '1' }));
const pool = benches[0]!.pool;
const keys = {
  probe: (await createApiKey(pool, { tenant: 'classbench' })).key,
  flood: (await createApiKey(pool, { tenant: 'classbench' })).key,
  admin: (await createApiKey(pool, { tenant: 'classbench', scopes: ['admin'] })).key,
};
const phases = configs.map((config) => ({ config, unloaded: [] as Phase[], flooded: [] as Phase[] }));
const servers: StartedFloodgate[] = [];
/** Where each configuration's probe sends: the API's PORT, or its CRITICAL_PORT. */
const probeUrls: string[] = [];
try {
  for (const [i, config] of configs.entries()) {
    const { env, bin } = configOf(config);
    // CRITICAL_PORT=free: the probe sends to a port of its own, picked now.
    const criticalPort = env.CRITICAL_PORT === 'free' ? await freePort() : undefined;
    const server = await startFloodgate(benches[i]!, {
      env: { SHED_MODE: 'enforce', ...env, ...(criticalPort ? { CRITICAL_PORT: String(criticalPort) } : {}) },
      bin,
    });
    servers.push(server);
    probeUrls.push(criticalPort ? `http://127.0.0.1:${criticalPort}` : server.url);
  }
  for (const url of probeUrls) await probe(url, keys.probe, Number(args['probe-rate']), 3);
  for (let round = 1; round <= Number(args.rounds); round++) {
    for (const [i, config] of configs.entries()) {
      const unloaded = await phase(servers[i]!, probeUrls[i]!, keys, Number(args.unloaded), 0);
      const flooded = await phase(servers[i]!, probeUrls[i]!, keys, Number(args.duration), Number(args.connections));
      phases[i]!.unloaded.push(unloaded);
      phases[i]!.flooded.push(flooded);
      console.error(
        `round ${round} ${config}: critical p50/p99 unloaded ${unloaded.probe.p50.toFixed(1)}/${unloaded.probe.p99.toFixed(1)} ms, flooded ${flooded.probe.p50.toFixed(1)}/${flooded.probe.p99.toFixed(1)} ms`,
      );
    }
  }
} finally {
  for (const server of servers) await server.stop();
  for (const b of benches) await b.close();
}

/** The rounds of one phase together: the probe's latencies pooled, the API's figures as their median. */
function combine(list: Phase[]) {
  const latencies = list.flatMap((p) => p.probe.latencies).sort((a, b) => a - b);
  const steady = list.flatMap((p) => p.probe.steady).sort((a, b) => a - b);
  const median = (f: (p: Phase) => number | null) => {
    const v = list
      .map(f)
      .filter((x): x is number => x !== null)
      .sort((a, b) => a - b);
    return v.length === 0 ? null : v[Math.floor(v.length / 2)]!;
  };
  const sum = (f: (p: Phase) => number) => list.reduce((n, p) => n + f(p), 0);
  const statuses: Record<string, number> = {};
  for (const p of list) for (const [k, v] of Object.entries(p.flood?.statuses ?? {})) statuses[k] = (statuses[k] ?? 0) + v;
  return {
    ok: latencies.length,
    sent: sum((p) => p.probe.sent),
    newConnections: sum((p) => p.probe.newConnections),
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    steadyP99: quantile(steady, 0.99),
    roundP99s: list.map((p) => p.probe.p99),
    serverP50: median((p) => p.serverP50),
    serverP99: median((p) => p.serverP99),
    xaddP50: median((p) => p.xaddP50),
    xaddP99: median((p) => p.xaddP99),
    loopDelayMean: median((p) => p.loopDelayMean),
    loopDelayMax: median((p) => p.loopDelayMax),
    floodPerSec: list.some((p) => p.flood) ? sum((p) => p.flood?.perSec ?? 0) / list.length : null,
    statuses,
    lowShed: sum((p) => p.lowShed),
    listenOverflows: list.some((p) => p.listenOverflows === null) ? null : sum((p) => p.listenOverflows ?? 0),
    apiCpu: median((p) => p.apiCpu) ?? 0,
  };
}
const results = phases.map((p) => ({ config: p.config, unloaded: combine(p.unloaded), flooded: combine(p.flooded), rounds: p }));

const withoutLatencies = (p: Phase) => ({
  ...p,
  probe: { ...p.probe, latencies: undefined, steady: undefined, samples: undefined },
  seconds: undefined,
});
const ms = (v: number | null) => (v === null || Number.isNaN(v) ? '-' : `${v.toFixed(1)} ms`);
const rows = results.flatMap(({ config, unloaded, flooded }) =>
  (
    [
      ['unloaded', unloaded],
      [`low flood, ${args.connections} connections`, flooded],
    ] as const
  ).map(([label, p]) =>
    [
      config,
      label,
      `${p.ok}/${p.sent} (${p.newConnections}; ${p.listenOverflows ?? '-'})`,
      ms(p.p50),
      `${ms(p.p99)} (${p.roundP99s.map((v) => v.toFixed(0)).join(', ')})`,
      p === flooded ? `${(flooded.p99 / unloaded.p99).toFixed(2)}×` : '1×',
      p === flooded ? `${ms(p.steadyP99)} (${(flooded.steadyP99 / unloaded.p99).toFixed(2)}×)` : '-',
      `${ms(p.serverP50)} / ${ms(p.serverP99)}`,
      `${ms(p.xaddP50)} / ${ms(p.xaddP99)}`,
      `${ms(p.loopDelayMean)} (max ${ms(p.loopDelayMax)})`,
      p.floodPerSec === null
        ? '-'
        : `${Math.round(p.floodPerSec)}/s, ${Object.entries(p.statuses)
            .map(([st, n]) => `${st}: ${n}`)
            .join(', ')}`,
      `${p.lowShed}`,
      `${Math.round(p.apiCpu * 100)} %`,
    ].join(' | '),
  ),
);
const m = machine();
const markdown = `| Configuration | Phase | Critical 2xx / sent (new connections; listen-queue drops, machine-wide) | Critical p50 | Critical p99 (each round) | p99 × unloaded | p99 after the first ${ONSET_SECONDS} s (× unloaded) | API time critical p50 / p99 | XADD p50 / p99 | Event-loop delay p99 | Low flood answered | Low shed | API CPU |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
${rows.map((r) => `| ${r} |`).join('\n')}

Critical probe: ${args['probe-rate']} requests/s, open loop, one event each, on connections of its own; per round and configuration ${args.unloaded} s
unloaded, then ${args.duration} s under a closed-loop flood of ${args.connections} connections of low-class single-event requests (same tenant,
another key) from another process; ${args.rounds} rounds, the configurations interleaved (one Floodgate each, all running). Probe
latencies are pooled over the rounds; the API's figures (its own time for critical requests, the XADD, the event-loop delay p99
and API CPU) are the median of the rounds.
Aim: critical p99 under the flood ≤ 2× unloaded. ${m.cpus} × ${m.model}, ${m.memGiB} GiB, node ${m.node}.

### Timeline of the flooded phases

Per second of the phase (second n covers [n - 1, n) s): the critical requests sent in it (pooled over the rounds)
and, as the median of the rounds, the API's event-loop delay (highest over the second), the probe process's own
(a late probe shows as a slow API), the API's GC time, low requests shed and low events accepted, the shed level,
the non-critical in-flight limit (limit / slots held / low requests waiting), the API's CPU and the machine's
(all cores), and machine-wide SYN retransmits and listen-queue drops (summed over the rounds).

${timelineMarkdown(
  results.map((r) => ({ config: r.config, rounds: r.rounds.flooded.map((p) => ({ samples: p.probe.samples, seconds: p.seconds })) })),
  Math.max(50, 2 * Math.max(...results.map((r) => r.unloaded.p99))),
)}`;
console.log(`\n${markdown}`);
await mkdir(args.out, { recursive: true });
const file = join(args.out, `class-latency-${new Date().toISOString().replace(/[:.]/g, '-')}`);
await writeFile(`${file}.md`, markdown);
await writeFile(
  `${file}.json`,
  JSON.stringify(
    {
      machine: m,
      args,
      results: results.map((r) => ({
        ...r,
        rounds: { unloaded: r.rounds.unloaded.map(withoutLatencies), flooded: r.rounds.flooded.map(withoutLatencies) },
      })),
    },
    null,
    2,
  ),
);
await writeFile(
  `${file}-timeline.json`,
  JSON.stringify(
    results.map((r) => ({
      config: r.config,
      unloaded: r.rounds.unloaded.map((p) => ({ samples: p.probe.samples, seconds: p.seconds })),
      flooded: r.rounds.flooded.map((p) => ({ samples: p.probe.samples, seconds: p.seconds })),
    })),
  ),
);
console.log(`report: ${file}.md`);
process.exit(0);
