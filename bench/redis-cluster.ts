import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { eventually, freePort } from './processes.js';

const run = promisify(execFile);

/** A Redis Cluster (masters with one replica each) owned by one test or benchmark, from the installed redis-server. */
export interface TestRedisCluster {
  /** `host:port` of every node, the REDIS_CLUSTER_NODES value. */
  readonly seeds: string;
  readonly ports: readonly number[];
  /** The pid of the node on `port` (for CPU accounting), undefined when it is not running. */
  pidOf(port: number): number | undefined;
  /** The node currently master of the slot of `key`, by port. */
  masterOf(key: string): Promise<number>;
  /** SIGKILLs the node on `port` (it stays dead until `restart`). */
  kill(port: number): Promise<void>;
  /** Starts the node on `port` again with its cluster file: it rejoins (a failed-over master as a replica). */
  restart(port: number): void;
  /** Waits until every live node reports cluster_state:ok and (unless `replicas` is false) every master has its replica. */
  ready(timeoutMs?: number, replicas?: boolean): Promise<void>;
  /** The slot of `key`. */
  slotOf(key: string): Promise<number>;
  /** The ports of the nodes that are masters now. */
  masters(): Promise<number[]>;
  /**
   * Moves `slot` from the master on `from` to the master on `to` the way `redis-cli --cluster reshard` does:
   * SETSLOT IMPORTING on the target, MIGRATING on the source, MIGRATE of its keys `batch` at a time (pausing
   * `pauseMs` between batches, so that clients meet the slot half-moved), then SETSLOT NODE on both and on every
   * other master. Resolves with the number of keys moved.
   */
  migrateSlot(slot: number, from: number, to: number, options?: { batch?: number; pauseMs?: number }): Promise<number>;
  /** Kills every node and removes their files. */
  stop(): Promise<void>;
}

async function cli(port: number, ...args: string[]): Promise<string> {
  const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 10_000 });
  return stdout;
}

/** Starts `masters` masters with one replica each on free ports, creates the cluster and waits until it is ok. */
export async function startRedisCluster(masters = 3): Promise<TestRedisCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'floodgate-cluster-'));
  const nodes = new Map<number, ChildProcess>();
  const ports: number[] = [];
  const stop = async () => {
    await Promise.all(
      [...nodes.values()].map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
      }),
    );
    nodes.clear();
    await rm(dir, { recursive: true, force: true });
  };
  const start = (port: number) => {
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        join(dir, `nodes-${port}.conf`),
        '--cluster-node-timeout',
        '2000',
        '--dir',
        dir,
        '--dbfilename',
        `dump-${port}.rdb`,
      ],
      { stdio: 'ignore' },
    );
    nodes.set(port, child);
  };
  const live = () => ports.filter((p) => nodes.get(p)?.exitCode === null && nodes.get(p)?.signalCode === null);
  const ready = async (timeoutMs = 30_000, replicas = true) => {
    await eventually(
      async () => {
        for (const port of live()) {
          const info = await cli(port, 'cluster', 'info').catch(() => '');
          if (!info.includes('cluster_state:ok')) return false;
          if (!replicas) continue;
          const replication = await cli(port, 'info', 'replication').catch(() => '');
          if (replication.includes('role:master') && !/connected_slaves:[1-9]/.test(replication)) return false;
          if (replication.includes('role:slave') && !replication.includes('master_link_status:up')) return false;
        }
        return true;
      },
      'redis cluster ok with every master replicated',
      timeoutMs,
    );
  };
  try {
    for (let i = 0; i < masters * 2; i++) {
      const port = await freePort();
      start(port);
      ports.push(port);
    }
    await eventually(
      async () => (await Promise.all(ports.map((p) => cli(p, 'ping').catch(() => '')))).every((r) => r.trim() === 'PONG'),
      'cluster nodes up',
      10_000,
    );
    await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes'], {
      timeout: 30_000,
    });
    await ready();
  } catch (err) {
    await stop();
    throw err;
  }
  const slotOf = async (key: string) => Number((await cli(live()[0]!, 'cluster', 'keyslot', key)).trim());
  const nodeId = async (port: number) => (await cli(port, 'cluster', 'myid')).trim();
  const masterPorts = async () => {
    const roles = await Promise.all(live().map(async (p) => ((await cli(p, 'role').catch(() => '')).startsWith('master') ? p : 0)));
    return roles.filter((p) => p > 0);
  };
  return {
    seeds: ports.map((p) => `127.0.0.1:${p}`).join(','),
    ports,
    pidOf: (port) => nodes.get(port)?.pid,
    slotOf,
    masters: masterPorts,
    async migrateSlot(slot, from, to, { batch = 10, pauseMs = 0 } = {}) {
      const [fromId, toId] = [await nodeId(from), await nodeId(to)];
      await cli(to, 'cluster', 'setslot', String(slot), 'importing', fromId);
      await cli(from, 'cluster', 'setslot', String(slot), 'migrating', toId);
      let moved = 0;
      for (;;) {
        const keys = (await cli(from, 'cluster', 'getkeysinslot', String(slot), String(batch))).split('\n').filter((k) => k !== '');
        if (keys.length === 0) break;
        const reply = await cli(from, 'migrate', '127.0.0.1', String(to), '', '0', '10000', 'keys', ...keys);
        if (!/OK|NOKEY/.test(reply)) throw new Error(`MIGRATE of slot ${slot}: ${reply}`);
        moved += keys.length;
        if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
      }
      // The target first (it stops answering TRYAGAIN/ASK-only), then the source (it starts answering MOVED), then
      // the rest, as redis-cli does.
      await cli(to, 'cluster', 'setslot', String(slot), 'node', toId);
      await cli(from, 'cluster', 'setslot', String(slot), 'node', toId);
      for (const port of await masterPorts()) {
        if (port !== from && port !== to) await cli(port, 'cluster', 'setslot', String(slot), 'node', toId).catch(() => '');
      }
      return moved;
    },
    async masterOf(key) {
      const slot = await slotOf(key);
      const reply = await cli(live()[0]!, 'cluster', 'slots');
      // redis-cli prints CLUSTER SLOTS flat: start, end, then per node ip, port, id (and maybe hostname fields).
      const lines = reply.split('\n').map((l) => l.trim());
      for (let i = 0; i + 3 < lines.length; i++) {
        const start = Number(lines[i]);
        const end = Number(lines[i + 1]);
        if (
          /^\d+$/.test(lines[i] ?? '') &&
          /^\d+$/.test(lines[i + 1] ?? '') &&
          lines[i + 2] === '127.0.0.1' &&
          start <= slot &&
          slot <= end
        ) {
          return Number(lines[i + 3]);
        }
      }
      throw new Error(`no master found for slot ${slot}`);
    },
    async kill(port) {
      const child = nodes.get(port);
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await exited;
    },
    restart: start,
    ready,
    stop,
  };
}
