// The `--topology` run of bench/queue-bench.ts: starts a private Redis (standalone) and a private Redis Cluster
// (3 masters, 3 replicas) and a private database, then measures every topology × worker count in alternating
// rounds (A B C … A B C …, each round starting one cell later), so that a slow minute of the machine falls on
// every topology alike. Prints each topology's median and spread, the paired per-round ratios, the CPU per
// durable event by role and each redis-server's own cost per command, and removes all of it.
// The workers are `floodgate worker` processes from the build (run `npm run build` first).
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import pg from 'pg';
import { createBenchEnv, type BenchEnv } from './bench-env.js';
import { PIPELINE_ROLES, totalCpu } from './pipeline-cpu.js';
import { measureCell, topologySetup, type CellFigures, type Topology, type TopologyLoad, type TopologySetup } from './queue-topology.js';
import { startRedisCluster, type TestRedisCluster } from './redis-cluster.js';
import { nodeStats, type CommandStats } from './redis-commandstats.js';
import { startPrivateRedis, type PrivateRedis } from './redis-server.js';

const DATABASE = 'floodgate_queue_topology_bench';
const ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

/** How the run is paced. */
export interface TopologyRunOptions {
  readonly load: TopologyLoad;
  readonly workerCounts: readonly number[];
  readonly rounds: number;
  /** A file to hold an flock on while measuring (released between holds), as the shared machine asks. */
  readonly lockFile?: string;
  /** Longest hold of the lock, s: a round that would end past it starts in the next hold. */
  readonly holdSeconds: number;
  /** Where to write every cell's figures as JSON. */
  readonly out?: string;
  /**
   * Another build's `bin/floodgate.js`: the Redis topologies are measured with its workers too, as extra cells
   * of the same rounds, named with `compareLabel`.
   */
  readonly compareBin?: string;
  readonly compareLabel?: string;
  /** Only these topologies (keys: pg, r1, r3, c3, c6); all when omitted. */
  readonly only?: readonly string[];
}

const BASE_TOPOLOGIES: readonly Topology[] = [
  { key: 'pg', name: 'postgres queue', queue: 'postgres', shards: 1, cluster: false },
  { key: 'r1', name: 'redis, 1 shard', queue: 'redis', shards: 1, cluster: false },
  // Sharding without a cluster: apart from the cluster's own cost, a worker runs one flusher per shard, so
  // more shards mean more, smaller batches. This row separates the two.
  { key: 'r3', name: 'redis, 3 shards', queue: 'redis', shards: 3, cluster: false },
  { key: 'c3', name: 'cluster, 3 shards', queue: 'redis', shards: 3, cluster: true },
  { key: 'c6', name: 'cluster, 6 shards', queue: 'redis', shards: 6, cluster: true },
];

/** The topologies of a run: the chosen ones, then their Redis ones again with the workers of `compareBin`. */
function topologiesOf(options: TopologyRunOptions): Topology[] {
  const chosen = BASE_TOPOLOGIES.filter((t) => !options.only || options.only.includes(t.key));
  if (!options.compareBin) return chosen;
  const label = options.compareLabel ?? 'compared';
  return [
    ...chosen,
    ...chosen.filter((t) => t.queue === 'redis').map((t) => ({ ...t, name: `${t.name} [${label}]`, workerBin: options.compareBin })),
  ];
}

const fmtLoad = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

/** Holds an flock on `file` until the returned function is called (a child `flock` waiting on its stdin). */
async function holdLock(file: string): Promise<() => Promise<void>> {
  for (let attempt = 1; ; attempt++) {
    const child = spawn('flock', [file, '-c', 'echo held; exec cat > /dev/null'], { stdio: ['pipe', 'pipe', 'inherit'] });
    const held = await new Promise<boolean>((resolve) => {
      child.stdout.once('data', () => resolve(true));
      child.once('exit', () => resolve(false));
    });
    if (held) {
      return async () => {
        const exited = new Promise((r) => child.once('exit', r));
        child.stdin.end();
        await exited;
      };
    }
    // A waiting flock killed from outside: wait in line again rather than lose the run.
    if (attempt >= 5) throw new Error(`could not hold ${file}`);
    console.log(`flock ${file} ended before holding it; waiting again`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const spread = (xs: readonly number[], digits = 0) =>
  `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;
const perEvent = (c: CellFigures) => totalCpu(c.cpu) / c.events;

/** Summed command stats of some cells. */
function sumCommands(cells: readonly CellFigures[], pick: (c: CellFigures) => CommandStats): CommandStats {
  const sum: CommandStats = new Map();
  for (const cell of cells) {
    for (const [name, s] of pick(cell)) {
      const seen = sum.get(name) ?? { calls: 0, usec: 0 };
      seen.calls += s.calls;
      seen.usec += s.usec;
      sum.set(name, seen);
    }
  }
  return sum;
}

function report(results: Map<string, CellFigures[]>, workerCounts: readonly number[], topologies: readonly Topology[]): void {
  const key = (t: Topology, w: number) => `${t.name}/${w}`;
  console.log('\nevents/s durable and CPU µs per durable event (all roles): median (lowest–highest) over the rounds');
  console.log('topology             workers  rounds  events/s durable         CPU µs/event     durable p50 / p99 ≤ (worst)');
  for (const w of workerCounts) {
    for (const t of topologies) {
      const cells = results.get(key(t, w)) ?? [];
      if (cells.length === 0) continue;
      console.log(
        `${t.name.padEnd(20)} ${String(w).padStart(7)} ${String(cells.length).padStart(7)}  ${spread(cells.map((c) => c.eventsPerSec)).padEnd(24)} ${spread(
          cells.map(perEvent),
          1,
        ).padEnd(16)} ${Math.max(...cells.map((c) => c.durableP50))}s / ${Math.max(...cells.map((c) => c.durableP99))}s`,
      );
    }
  }
  console.log('\nCPU µs per durable event by role (median over the rounds), events per worker batch, Redis commands per entry');
  console.log(`topology             workers  ${PIPELINE_ROLES.map((r) => r.padStart(13)).join('')}  events/batch`);
  for (const w of workerCounts) {
    for (const t of topologies) {
      const cells = results.get(key(t, w)) ?? [];
      if (cells.length === 0) continue;
      const roles = PIPELINE_ROLES.map((r) =>
        median(cells.map((c) => c.cpu[r] / c.events))
          .toFixed(1)
          .padStart(13),
      ).join('');
      console.log(
        `${t.name.padEnd(20)} ${String(w).padStart(7)}  ${roles}  ${median(cells.map((c) => c.events / Math.max(1, c.batches)))
          .toFixed(0)
          .padStart(12)}`,
      );
    }
  }
  console.log(
    "\nEach redis-server's own execution time (INFO commandstats, all rounds): µs per entry [calls per entry], masters; replicas",
  );
  for (const w of workerCounts) {
    for (const t of topologies.filter((t) => t.queue === 'redis')) {
      const cells = results.get(key(t, w)) ?? [];
      if (cells.length === 0) continue;
      const entries = cells.reduce((n, c) => n + c.entries, 0);
      const show = (stats: CommandStats) =>
        [...stats]
          .filter(([, s]) => s.calls / entries >= 0.005)
          .sort((a, b) => b[1].usec - a[1].usec)
          .map(([name, s]) => `${name} ${(s.usec / entries).toFixed(2)} [${(s.calls / entries).toFixed(2)}]`)
          .join(', ');
      console.log(
        `${t.name} / ${w}: ${show(sumCommands(cells, (c) => c.masterCommands))}; replicas: ${show(sumCommands(cells, (c) => c.replicaCommands)) || '-'}`,
      );
    }
  }
  const pairs = (a: string, b: string, w: number, f: (c: CellFigures) => number) => {
    const as = results.get(`${a}/${w}`) ?? [];
    const bs = results.get(`${b}/${w}`) ?? [];
    return as.slice(0, Math.min(as.length, bs.length)).map((c, i) => f(c) / f(bs[i]!));
  };
  console.log('\nPaired ratios (cell ÷ cell of the same round): median (lowest–highest)');
  for (const w of workerCounts) {
    const names = new Set(topologies.map((t) => t.name));
    for (const [a, b] of [
      ['cluster, 3 shards', 'redis, 1 shard'],
      ['cluster, 3 shards', 'redis, 3 shards'],
      ['redis, 3 shards', 'redis, 1 shard'],
      ['cluster, 6 shards', 'redis, 1 shard'],
      ['postgres queue', 'redis, 1 shard'],
      ...topologies.filter((t) => t.workerBin).map((t) => [t.name.slice(0, t.name.indexOf(' [')), t.name] as const),
    ].filter(([a, b]) => names.has(a) && names.has(b))) {
      console.log(
        `${w} worker(s) ${a} ÷ ${b}: events/s ${spread(
          pairs(a, b, w, (c) => c.eventsPerSec),
          2,
        )}, CPU/event ${spread(pairs(a, b, w, perEvent), 2)}, ` +
          `without replicas ${spread(
            pairs(a, b, w, (c) => (totalCpu(c.cpu) - c.cpu.redisReplicas) / c.events),
            2,
          )}`,
      );
    }
  }
}

/** Writes every cell's figures as JSON. */
function writeCells(file: string, header: object, results: Map<string, CellFigures[]>): void {
  const plain = Object.fromEntries(
    [...results].map(([k, cs]) => [
      k,
      cs.map((c) => ({
        ...c,
        masterCommands: Object.fromEntries(c.masterCommands),
        replicaCommands: Object.fromEntries(c.replicaCommands),
      })),
    ]),
  );
  writeFileSync(file, JSON.stringify({ ...header, results: plain }, null, 1));
}

// SIGINT or SIGTERM ends the run after the round under way, with the report of the rounds measured.
let stopRequested = false;

/** Runs every topology with each worker count in alternating rounds and prints the figures. */
export async function runTopologyBench(options: TopologyRunOptions): Promise<void> {
  const { load, workerCounts, rounds } = options;
  const stop = () => {
    stopRequested = true;
  };
  process.once('SIGINT', stop).once('SIGTERM', stop);
  let release = options.lockFile ? await holdLock(options.lockFile) : async () => {};
  let holdStart = performance.now();
  console.log(`hold 1: load average ${fmtLoad()}`);
  let cluster: TestRedisCluster | undefined;
  let single: PrivateRedis | undefined;
  const setups: TopologySetup[] = [];
  let probe: pg.Client | undefined;
  let bench: BenchEnv | undefined;
  const results = new Map<string, CellFigures[]>();
  try {
    bench = await createBenchEnv('queue-topology', `postgres://postgres@127.0.0.1:5432/${DATABASE}`, { FLUSH_INTERVAL_MS: '100' });
    probe = new pg.Client({ connectionString: bench.databaseUrl, application_name: 'floodgate-topology-probe' });
    await probe.connect();
    const probePid = (await probe.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    [cluster, single] = await Promise.all([startRedisCluster(3), startPrivateRedis()]);
    const masters = await cluster.masters();
    const replicas = cluster.ports.filter((p) => !masters.includes(p));
    const singleRedis = { env: { REDIS_URL: single.url }, masters: [single.pid], replicas: [], masterStats: nodeStats([single.port]) };
    const clusterRedis = {
      env: { REDIS_CLUSTER_NODES: cluster.seeds },
      masters: masters.map((p) => cluster!.pidOf(p)!),
      replicas: replicas.map((p) => cluster!.pidOf(p)!),
      masterStats: nodeStats(masters),
      replicaStats: nodeStats(replicas),
    };
    for (const t of topologiesOf(options)) setups.push(topologySetup(bench, t, t.cluster ? clusterRedis : singleRedis));
    const ctx = { bench, database: DATABASE, probe, probePid };
    const started = performance.now();
    const progress = (what: string) => process.stderr.write(`${((performance.now() - started) / 1000).toFixed(1)} s ${what}\n`);
    const cells = workerCounts.flatMap((w) => setups.map((s) => ({ setup: s, workers: w })));
    console.log(
      `${load.requests} requests × ${load.perRequest} events per cell, ${16} in flight, enqueued while the workers drain; ` +
        `steady ${load.steadyRate} req/s for ${load.steadySeconds} s; ${rounds} rounds of ${cells.length} cells`,
    );
    let lastRoundMs = 0;
    let hold = 1;
    for (let round = 0; round < rounds; round++) {
      if (options.lockFile && performance.now() - holdStart + lastRoundMs * 1.2 > options.holdSeconds * 1000) {
        console.log(`hold ${hold} ends: load average ${fmtLoad()}`);
        await release();
        await new Promise((r) => setTimeout(r, 2000));
        release = await holdLock(options.lockFile);
        holdStart = performance.now();
        console.log(`hold ${++hold}: load average ${fmtLoad()}`);
      }
      const roundStart = performance.now();
      const line: string[] = [];
      for (let i = 0; i < cells.length; i++) {
        const { setup, workers } = cells[(i + round) % cells.length]!;
        const figures = await measureCell(ctx, setup, workers, load);
        const k = `${setup.topology.name}/${workers}`;
        results.set(k, [...(results.get(k) ?? []), figures]);
        progress(`${k}: ${figures.eventsPerSec.toFixed(0)} events/s`);
        line.push(`${setup.topology.name}/${workers} ${figures.eventsPerSec.toFixed(0)} ev/s ${perEvent(figures).toFixed(1)} µs/ev`);
      }
      lastRoundMs = performance.now() - roundStart;
      console.log(`round ${round + 1} (${(lastRoundMs / 1000).toFixed(0)} s, load average ${fmtLoad()}): ${line.join('; ')}`);
      // After every round, so that a run stopped early keeps what it measured.
      if (options.out) writeCells(options.out, { load, workerCounts, rounds: round + 1 }, results);
      if (stopRequested) {
        console.log(`stopped after round ${round + 1} of ${rounds}`);
        break;
      }
    }
    console.log(`hold ${hold} ends: load average ${fmtLoad()}`);
    report(
      results,
      workerCounts,
      setups.map((s) => s.topology),
    );
    if (options.out) console.log(`cells written to ${options.out}`);
  } finally {
    for (const s of setups) s.redis?.disconnect();
    for (const s of new Set(setups.flatMap((s) => [s.masterStats, s.replicaStats]))) s?.close();
    await probe?.end().catch(() => {});
    await cluster?.stop();
    await single?.stop();
    await bench?.close();
    const admin = new pg.Client({ connectionString: ADMIN_URL });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
    await admin.end();
    await release();
  }
}
