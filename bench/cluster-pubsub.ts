/**
 * Classic vs sharded pub/sub for the live view on a Redis Cluster (3 masters, 3 replicas, started here).
 *
 * Publishes `--batches` live-view-sized messages (`--bytes` each) through a script shaped like the live view's
 * (XADD to a per-tenant log + PUBLISH, or + SPUBLISH with the channel in the tenant's slot), over `--tenants`
 * tenants spread across the masters, with one subscriber per mode that receives every message (classic: one
 * connection on one node; sharded: one connection per master). Reports publish throughput, and the CPU the
 * whole cluster spent (INFO cpu of every node) per message, since classic PUBLISH is forwarded to every node
 * over the cluster bus while SPUBLISH stays on the shard's master and its replica.
 *
 * Usage: node --import tsx bench/cluster-pubsub.ts [--batches 5000] [--bytes 36000] [--tenants 12]
 */
import { parseArgs } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import { startRedisCluster } from './redis-cluster.js';

const { values } = parseArgs({
  options: {
    batches: { type: 'string', default: '5000' },
    bytes: { type: 'string', default: '36000' },
    tenants: { type: 'string', default: '12' },
  },
});
const batches = Number(values.batches);
const bytes = Number(values.bytes);
const tenants = Array.from({ length: Number(values.tenants) }, (_, i) => `tenant-${i}`);

const script = (publish: 'PUBLISH' | 'SPUBLISH') => `
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', 512, '*', 'b', ARGV[2])
redis.call('${publish}', ${publish === 'SPUBLISH' ? 'KEYS[2]' : 'ARGV[1]'}, id .. '\\n' .. ARGV[2])
return id`;

async function clusterCpu(ports: readonly number[]): Promise<number> {
  let seconds = 0;
  for (const port of ports) {
    const node = new Redis({ port, host: '127.0.0.1', lazyConnect: true });
    await node.connect();
    const info = await node.info('cpu');
    node.disconnect();
    for (const field of ['used_cpu_sys', 'used_cpu_user']) seconds += Number(new RegExp(`${field}:([\\d.]+)`).exec(info)?.[1] ?? 0);
  }
  return seconds;
}

const cluster = await startRedisCluster(3);
try {
  const client = new Cluster(
    cluster.seeds.split(',').map((s) => ({ host: '127.0.0.1', port: Number(s.split(':')[1]) })),
    {
      enableAutoPipelining: true,
    },
  );
  const body = 'x'.repeat(bytes);
  const results: Record<string, unknown>[] = [];
  for (const mode of ['PUBLISH', 'SPUBLISH'] as const) {
    const channel = (t: string) => `bench:live:{${t}}:channel`;
    let received = 0;
    let close: () => void;
    if (mode === 'PUBLISH') {
      const sub = new Redis({ host: '127.0.0.1', port: cluster.ports[0]! });
      sub.on('message', () => received++);
      await sub.subscribe(...tenants.map(channel));
      close = () => sub.disconnect();
    } else {
      const sub = new Cluster([{ host: '127.0.0.1', port: cluster.ports[0]! }], { shardedSubscribers: true });
      sub.on('smessage', () => received++);
      for (const t of tenants) await sub.ssubscribe(channel(t));
      close = () => sub.disconnect();
    }
    const lua = script(mode);
    const cpuBefore = await clusterCpu(cluster.ports);
    const started = performance.now();
    const inFlight: Promise<unknown>[] = [];
    for (let i = 0; i < batches; i++) {
      const t = tenants[i % tenants.length]!;
      inFlight.push(client.eval(lua, 2, `bench:live:{${t}}:log`, channel(t), channel(t), body));
      if (inFlight.length >= 64) await Promise.all(inFlight.splice(0));
    }
    await Promise.all(inFlight);
    while (received < batches && performance.now() - started < 60_000) await new Promise((r) => setTimeout(r, 10));
    const seconds = (performance.now() - started) / 1000;
    const cpu = (await clusterCpu(cluster.ports)) - cpuBefore;
    close();
    results.push({
      mode,
      batches,
      received,
      batchesPerSecond: Math.round(batches / seconds),
      clusterCpuMsPerBatch: Number(((cpu * 1000) / batches).toFixed(3)),
    });
  }
  client.disconnect();
  console.log(JSON.stringify({ bytes, tenants: tenants.length, results }, null, 2));
} finally {
  await cluster.stop();
}
