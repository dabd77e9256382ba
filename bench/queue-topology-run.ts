// The `--topology` run of bench/queue-bench.ts: starts a private Redis Cluster (3 masters, 3 replicas) and a
// private database, measures every topology × worker count in one run, prints the table, and removes all of it.
// The workers are `floodgate worker` processes from the build (run `npm run build` first).
import { loadavg } from 'node:os';
import pg from 'pg';
import { createBenchEnv, type BenchEnv } from './bench-env.js';
import { runTopology, type Topology, type TopologyFigures, type TopologyLoad } from './queue-topology.js';
import { startRedisCluster, type TestRedisCluster } from './redis-cluster.js';

const DATABASE = 'floodgate_queue_topology_bench';
const ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

async function deletePrefix(bench: BenchEnv, prefix: string): Promise<void> {
  for await (const keys of bench.redis.scanStream({ match: `${prefix}*`, count: 500 }) as AsyncIterable<string[]>) {
    if (keys.length > 0) await bench.redis.del(...keys);
  }
}

/** Runs every topology with each worker count in `workerCounts` and prints events/s durable, p99 and the cluster's ratios. */
export async function runTopologyBench(load: TopologyLoad, workerCounts: number[]): Promise<void> {
  const loadBefore = loadavg();
  let cluster: TestRedisCluster | undefined;
  const bench = await createBenchEnv('queue-topology', `postgres://postgres@127.0.0.1:5432/${DATABASE}`, { FLUSH_INTERVAL_MS: '100' });
  try {
    cluster = await startRedisCluster(3);
    const topologies: Topology[] = [
      { name: 'postgres queue', queue: 'postgres', shards: 1 },
      { name: 'redis, 1 shard', queue: 'redis', shards: 1 },
      // Sharding without a cluster: apart from the cluster's own cost, a worker runs one flusher per shard, so
      // more shards mean more batches written to Postgres at once. This row separates the two.
      { name: 'redis, 3 shards', queue: 'redis', shards: 3 },
      { name: 'cluster, 3 shards', queue: 'redis', shards: 3, clusterSeeds: cluster.seeds },
      { name: 'cluster, 6 shards', queue: 'redis', shards: 6, clusterSeeds: cluster.seeds },
    ];
    console.log(
      `${load.requests} requests × ${load.perRequest} events backlog, ${16} in flight; steady ${load.steadyRate} req/s for ${load.steadySeconds} s; ` +
        `load average before ${loadBefore.map((l) => l.toFixed(2)).join(' ')}`,
    );
    console.log('workers: separate `floodgate worker` processes');
    console.log('topology             workers  drain events/s  durable p50 ≤  p99 ≤');
    const results = new Map<string, TopologyFigures>();
    for (const workers of workerCounts) {
      for (const topology of topologies) {
        const r = await runTopology(bench, topology, workers, load);
        results.set(`${topology.name}/${workers}`, r);
        console.log(
          `${topology.name.padEnd(20)} ${String(workers).padStart(7)} ${r.drainEventsPerSec.toFixed(0).padStart(15)} ${`${r.durableP50}s`.padStart(13)} ${`${r.durableP99}s`.padStart(6)}`,
        );
      }
    }
    for (const workers of workerCounts) {
      const base = results.get(`redis, 1 shard/${workers}`)!.drainEventsPerSec;
      const ratios = topologies
        .filter((t) => t.name !== 'redis, 1 shard')
        .map((t) => `${t.name} ${(results.get(`${t.name}/${workers}`)!.drainEventsPerSec / base).toFixed(2)}×`);
      console.log(`${workers} worker(s), relative to redis 1 shard: ${ratios.join(', ')}`);
      const sharded = results.get(`redis, 3 shards/${workers}`)!.drainEventsPerSec;
      console.log(
        `${workers} worker(s), cluster 3 shards relative to one Redis with 3 shards: ${(results.get(`cluster, 3 shards/${workers}`)!.drainEventsPerSec / sharded).toFixed(2)}×`,
      );
    }
    console.log(
      `load average after ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
  } finally {
    await deletePrefix(bench, `queue-topology:${bench.runId}:`).catch(() => {});
    await cluster?.stop();
    await bench.close();
    const admin = new pg.Client({ connectionString: ADMIN_URL });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
    await admin.end();
  }
}
