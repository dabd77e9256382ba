// `npm run bench:limits`: what a rate limit shared through Redis costs the API per request, in one run.
//   Cases, each on a fresh single API process (API_PROCESSES=1, SHED_MODE=off, no worker), offered the same paced
//   rate of single-event POSTs, in alternating rounds so that machine noise spreads over all of them:
//     none         keys without a rate limit (the reference);
//     local        RATE_LIMIT_STORE=local: per-process token buckets, as before;
//     redis        RATE_LIMIT_STORE=redis: the shared bucket, one key limited to 20× the offered rate (leased in
//                  slices of 100 ms of its rate: one EVALSHA per slice);
//     local-slow / redis-slow   --slow-keys keys, each limited just above its share of the offered rate and
//                  under 10/s, so that every request of the shared store asks Redis (the worst case: no lease).
//   Reported per case: the API's marginal CPU per request — (CPU at the high rate − CPU at the low rate) /
//   (requests at the high rate − requests at the low rate), utime+stime of the API process — which leaves out what
//   the process spends whatever the load (timers, metrics, GC of an idle heap); Redis refills per request
//   (floodgate_shared_limit_calls_total); the status codes.
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { createApiKey } from '../lib/api-keys.js';
import { machine } from '../loadtest/report.js';
import { createBenchEnv, startFloodgate } from './bench-env.js';
import { processCpuMicros } from './cpu.js';
import { REPO_ROOT } from './processes.js';

const { values: args } = parseArgs({
  options: {
    rate: { type: 'string', default: '450' },
    'low-rate': { type: 'string', default: '150' },
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '3' },
    'slow-keys': { type: 'string', default: '100' },
    'database-url': { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/floodgate_limitsbench' },
    out: { type: 'string', default: `${REPO_ROOT}bench/reports` },
  },
});
const rate = Number(args.rate);
const lowRate = Number(args['low-rate']);
const seconds = Number(args.seconds);
const rounds = Number(args.rounds);
const slowKeys = Number(args['slow-keys']);
const WARM_UP_SECONDS = 2;

const bench = await createBenchEnv('limitsbench', args['database-url'], { API_PROCESSES: '1', SHED_MODE: 'off' });
const unlimited = (await createApiKey(bench.pool, { tenant: 'limits-none' })).key;
const limited = (await createApiKey(bench.pool, { tenant: 'limits-one', rateLimit: { perSecond: rate * 20, burst: rate * 20 } })).key;
const perSlowKey = Math.min(9.5, Math.ceil((rate / slowKeys) * 1.2 * 10) / 10);
const slow: string[] = [];
for (let i = 0; i < slowKeys; i++) slow.push((await createApiKey(bench.pool, { tenant: `limits-slow-${i}`, rateLimit: { perSecond: perSlowKey, burst: 10 } })).key);

interface Case {
  readonly name: string;
  readonly store: 'local' | 'redis';
  readonly keys: readonly string[];
}
const CASES: readonly Case[] = [
  { name: 'none', store: 'local', keys: [unlimited] },
  { name: 'local', store: 'local', keys: [limited] },
  { name: 'redis', store: 'redis', keys: [limited] },
  { name: 'local-slow', store: 'local', keys: slow },
  { name: 'redis-slow', store: 'redis', keys: slow },
];

interface Measured {
  /** Marginal API CPU per request between the two rates, µs. */
  marginalMicros: number;
  answered: number;
  refills: number;
  status: Record<string, number>;
}

/** Paced single-event POSTs, the keys in turn; the answers by status. */
async function offer(url: string, keys: readonly string[], duration: number, perSecond: number): Promise<Record<string, number>> {
  let next = 0;
  const body = JSON.stringify({ type: 'limits.bench', data: { n: 1 } });
  const result = await autocannon({
    url: `${url}/v1/events`,
    connections: 20,
    duration,
    overallRate: perSecond,
    requests: [
      {
        method: 'POST',
        setupRequest: (req) => ({ ...req, body, headers: { 'content-type': 'application/json', authorization: `Bearer ${keys[next++ % keys.length]}` } }),
      },
    ],
  });
  const status: Record<string, number> = {};
  for (const [code, n] of Object.entries(result.statusCodeStats ?? {})) status[code] = (n as { count: number }).count;
  return status;
}

const refills = async (metricsUrl: string) => {
  const text = await (await fetch(metricsUrl)).text();
  let sum = 0;
  for (const m of text.matchAll(/^floodgate_shared_limit_calls_total\{outcome="(granted|empty|error)"[^}]*\} (\S+)$/gm)) sum += Number(m[2]);
  return sum;
};

async function measure(c: Case): Promise<Measured> {
  const floodgate = await startFloodgate(bench, { env: { RATE_LIMIT_STORE: c.store }, worker: false });
  try {
    await offer(floodgate.url, c.keys, WARM_UP_SECONDS, rate);
    const at = async (perSecond: number) => {
      const cpuBefore = processCpuMicros(floodgate.apiPid)!;
      const status = await offer(floodgate.url, c.keys, seconds, perSecond);
      return { cpu: processCpuMicros(floodgate.apiPid)! - cpuBefore, answered: Object.values(status).reduce((a, b) => a + b, 0), status };
    };
    const refillsBefore = await refills(floodgate.metricsUrl);
    const low = await at(lowRate);
    const high = await at(rate);
    const answered = low.answered + high.answered;
    const status: Record<string, number> = { ...low.status };
    for (const [code, n] of Object.entries(high.status)) status[code] = (status[code] ?? 0) + n;
    return { marginalMicros: (high.cpu - low.cpu) / Math.max(1, high.answered - low.answered), answered, refills: (await refills(floodgate.metricsUrl)) - refillsBefore, status };
  } finally {
    await floodgate.stop();
    await bench.redis.del(bench.config.streamKey);
  }
}

const results = new Map<string, Measured[]>(CASES.map((c) => [c.name, []]));
try {
  for (let round = 1; round <= rounds; round++) {
    for (const c of CASES) {
      const m = await measure(c);
      results.get(c.name)!.push(m);
      console.error(`round ${round} ${c.name}: ${m.marginalMicros.toFixed(1)} µs/request, ${(m.refills / m.answered).toFixed(3)} refills/request, ${JSON.stringify(m.status)}`);
    }
  }
} finally {
  await bench.close();
}

const sum = (ms: Measured[], f: (m: Measured) => number) => ms.reduce((a, m) => a + f(m), 0);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
// Each round's figure against the `none` case of the same round: rounds differ more than cases do on a shared
// machine, so the difference within a round is the figure to trust.
const extra = (name: string) => results.get(name)!.map((m, i) => m.marginalMicros - results.get('none')![i]!.marginalMicros);
const rows = CASES.map((c) => {
  const ms = results.get(c.name)!;
  const status: Record<string, number> = {};
  for (const m of ms) for (const [code, n] of Object.entries(m.status)) status[code] = (status[code] ?? 0) + n;
  const d = extra(c.name);
  return `| ${c.name} | ${median(ms.map((m) => m.marginalMicros)).toFixed(1)} µs | ${median(d).toFixed(1)} µs (${Math.min(...d).toFixed(1)} to ${Math.max(...d).toFixed(1)}) | ${(sum(ms, (m) => m.refills) / sum(ms, (m) => m.answered)).toFixed(3)} | ${Object.entries(status).map(([k, v]) => `${k}×${v}`).join(' ')} |`;
});
const m = machine();
const table = [
  `${m.cpus} × ${m.model}, ${m.memGiB} GiB, node ${m.node}; ${lowRate} and ${rate} req/s offered, ${seconds} s each, ${rounds} rounds; ${slowKeys} slow keys at ${perSlowKey}/s each`,
  '',
  '| case | API CPU per request (marginal, median) | − none, same round: median (range) | Redis refills per request | answers |',
  '| --- | --- | --- | --- | --- |',
  ...rows,
].join('\n');
console.log(table);
await mkdir(args.out, { recursive: true });
await writeFile(join(args.out, `limits-cost-${Date.now().toString(36)}.md`), `# bench:limits\n\n${table}\n`);
