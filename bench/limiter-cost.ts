// `npm run bench:limiter`: what a rate limit costs per request, measured in-process where the API spends it, in
// one run: the shared buckets (app/limits/shared-bucket.ts) against the real Redis, with the CPU of this process
// and of the Redis server per request. End-to-end figures (API processes under load) drown a few µs in the noise of a shared
// machine; here nothing else runs in the measured process.
//   Cases, in alternating rounds of --requests takes each, as the rate-limit middleware makes them (one token,
//   awaiting only when a take answers with a promise), paced at --pace takes a second in 10 ms steps as a
//   running API would see them (a lease lasts as long as the key's traffic takes to spend it):
//     local        RATE_LIMIT_STORE=local: the per-process token bucket;
//     redis        the shared bucket, one key limited to twice --pace (leased in slices of 100 ms of that rate: one
//                  EVALSHA per slice, asked for before the slice runs out; no take is refused);
//     redis-slow   the shared bucket, --keys keys each limited to 9/s (burst as large): under 10/s, so no lease and
//                  every take is one EVALSHA round trip (the worst case).
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Registry } from 'prom-client';
import { createSharedBuckets, type BucketSpec, type SharedBuckets } from '../app/limits/shared-bucket.js';
import { loadConfig } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { createRedis } from '../lib/redis.js';
import { machine } from '../loadtest/report.js';
import { processCpuMicros } from './cpu.js';
import { REPO_ROOT } from './processes.js';

const { values: args } = parseArgs({
  options: {
    requests: { type: 'string', default: '20000' },
    pace: { type: 'string', default: '4000' },
    rounds: { type: 'string', default: '5' },
    keys: { type: 'string', default: '1000' },
    out: { type: 'string', default: `${REPO_ROOT}bench/reports` },
  },
});
const requests = Number(args.requests);
const pace = Number(args.pace);
const STEP_MS = 10;
const rounds = Number(args.rounds);
const keys = Number(args.keys);

const config = loadConfig({});
const redis = createRedis(config.redisUrl);
const prefix = `limiterbench:${Date.now().toString(36)}`;
const logger = createLogger('warn', 'limiter-bench');
/** Fresh buckets (and a fresh registry counting their Redis calls) for each run, so one run's fallback does not carry over. */
function buckets(shared: boolean): { buckets: SharedBuckets; registry: Registry } {
  const registry = new Registry();
  return { buckets: createSharedBuckets({ redis, keyPrefix: prefix, processes: 1, registry, logger, shared }), registry };
}
const info = await redis.info('server');
const redisPid = Number(/^process_id:(\d+)/m.exec(info)?.[1]);
const redisCpu = () => processCpuMicros(redisPid) ?? NaN;

interface Case {
  readonly name: string;
  readonly shared: boolean;
  readonly spec: BucketSpec;
  readonly ids: number;
}
const FAST: BucketSpec = { rate: 2 * pace, burst: 2 * pace, periodSeconds: 0 };
const SLOW: BucketSpec = { rate: 9, burst: 1_000_000, periodSeconds: 0 };
const CASES: readonly Case[] = [
  { name: 'local', shared: false, spec: FAST, ids: 1 },
  { name: 'redis', shared: true, spec: FAST, ids: 1 },
  { name: 'redis-slow', shared: true, spec: SLOW, ids: keys },
];

interface Run {
  own: number;
  redis: number;
  refused: number;
  /** Script calls made, and takes the local share decided (Redis too slow or down). */
  calls: number;
  local: number;
}

/** Takes `requests` tokens at `pace` a second, at most `concurrency` waiting at once; returns this process's and Redis's CPU. */
async function run(c: Case, concurrency = 50): Promise<Run> {
  const { buckets: b, registry } = buckets(c.shared);
  // Every key's bucket leased once before measuring, as a running API's would be.
  for (let i = 0; i < c.ids; i++) await b.take(`key:${i}`, c.spec, 1);
  const outcomes = async () => {
    const values = (await registry.getSingleMetric('floodgate_shared_limit_calls_total')!.get()).values;
    const of = (o: string) => values.find((v) => v.labels.outcome === o)?.value ?? 0;
    return { calls: of('granted') + of('empty') + of('error'), local: of('local') };
  };
  const before = await outcomes();
  let refused = 0;
  let next = 0;
  const ownBefore = process.cpuUsage();
  const redisBefore = redisCpu();
  const started = performance.now();
  const pending: Promise<void>[] = [];
  for (let step = 0; next < requests; step++) {
    // This step's takes, `concurrency` at most in flight: the ones a lease covers answer at once.
    const due = Math.min(requests, Math.round(((step + 1) * STEP_MS * pace) / 1000));
    while (next < due) {
      const taken = b.take(`key:${next++ % c.ids}`, c.spec, 1);
      if (taken instanceof Promise) pending.push(taken.then((r) => void (r.ok || refused++)));
      else if (!taken.ok) refused++;
      if (pending.length >= concurrency) await Promise.all(pending.splice(0));
    }
    await new Promise((r) => setTimeout(r, Math.max(0, started + (step + 1) * STEP_MS - performance.now())));
  }
  await Promise.all(pending);
  const own = process.cpuUsage(ownBefore);
  const redisMicros = redisCpu() - redisBefore;
  const after = await outcomes();
  return { own: own.user + own.system, redis: redisMicros, refused, calls: after.calls - before.calls, local: after.local - before.local };
}

const results = new Map<string, Run[]>(CASES.map((c) => [c.name, []]));
try {
  for (const c of CASES) await run(c); // warm-up: JIT, the script loaded
  for (let round = 1; round <= rounds; round++) {
    for (const c of CASES) {
      const r = await run(c);
      results.get(c.name)!.push(r);
      console.error(
        `round ${round} ${c.name}: ${(r.own / requests).toFixed(2)} µs/request here, ${(r.redis / requests).toFixed(2)} µs in Redis, ${r.calls} script calls, ${r.local} local decisions, ${r.refused} refused`,
      );
    }
  }
} finally {
  // The benchmark's buckets: one hash per key under its own prefix.
  let cursor = '0';
  do {
    const [nextCursor, found] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    if (found.length > 0) await redis.del(...found);
    cursor = nextCursor;
  } while (cursor !== '0');
  redis.disconnect();
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const perRequest = (name: string, f: (r: Run) => number) => results.get(name)!.map((r) => f(r) / requests);
const rows = CASES.map((c) => {
  const own = perRequest(c.name, (r) => r.own);
  const reference = perRequest('local', (r) => r.own);
  const extra = own.map((v, i) => v - reference[i]!);
  const inRedis = perRequest(c.name, (r) => r.redis);
  const calls = perRequest(c.name, (r) => r.calls);
  const decidedLocally = results.get(c.name)!.reduce((sum, r) => sum + r.local, 0);
  return `| ${c.name} | ${median(own).toFixed(2)} µs (${Math.min(...own).toFixed(2)}–${Math.max(...own).toFixed(2)}) | ${median(extra).toFixed(2)} µs | ${Number.isFinite(median(inRedis)) ? `${median(inRedis).toFixed(2)} µs` : '-'} | ${median(calls).toFixed(3)} | ${decidedLocally} |`;
});
const m = machine();
const kernel = execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim();
const table = [
  `${m.cpus} × ${m.model}, ${m.memGiB} GiB, node ${m.node}, kernel ${kernel}; ${rounds} rounds × ${requests} takes per case at ${pace}/s; ${keys} slow keys`,
  '',
  '| case | API process CPU per request (median, range) | − local, same round (median) | Redis server CPU per request (median) | Redis calls per request | takes the local share decided |',
  '| --- | --- | --- | --- | --- | --- |',
  ...rows,
].join('\n');
console.log(table);
await mkdir(args.out, { recursive: true });
await writeFile(join(args.out, `limiter-cost-${Date.now().toString(36)}.md`), `# bench:limiter\n\n${table}\n`);
