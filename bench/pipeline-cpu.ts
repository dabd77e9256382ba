// CPU time of every process of an ingest pipeline over a window, summed by role: the enqueuer (the API's queue
// write, in the benchmark's own process), the worker processes, the Redis masters and replicas, and the Postgres
// backends serving the benchmark's database. CPU per durable event is far less sensitive to other load on the
// machine than throughput: a process that waited for a core spent nothing meanwhile.
import { readdirSync, readFileSync } from 'node:fs';
import { processCpuMicros } from './cpu.js';

/** The roles of the pipeline whose CPU is summed. */
export const PIPELINE_ROLES = ['api', 'workers', 'redisMasters', 'redisReplicas', 'postgres'] as const;
export type PipelineRole = (typeof PIPELINE_ROLES)[number];
/** CPU time per role, in µs. */
export type PipelineCpu = Record<PipelineRole, number>;

/** The processes of one pipeline; the API role is the calling process (see `apiCpuMicros`). */
export interface PipelineProcesses {
  readonly workers: readonly number[];
  readonly redisMasters: readonly number[];
  readonly redisReplicas: readonly number[];
  /** The database whose backends count (they come and go with pool connections, so they are listed at each read). */
  readonly database: string;
  /** Backends left out: the benchmark's own probe. */
  readonly excludeBackends: ReadonlySet<number>;
}

/** utime + stime of every process of `of`, keyed `role:pid`, at one instant. */
export interface CpuSnapshot {
  readonly micros: ReadonlyMap<string, number>;
}

/** The CPU (user + system, every thread) of this process so far, in µs. */
export function apiCpuMicros(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}

/** Pids of the Postgres backends connected to `database`: their process title names user and database. */
export function postgresBackends(database: string): number[] {
  const pids: number[] = [];
  const pattern = new RegExp(`^postgres: [^:]+: \\S+ ${database.replace(/[^\w]/g, '\\$&')} `);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (pattern.test(readFileSync(`/proc/${entry}/cmdline`, 'utf8'))) pids.push(Number(entry));
    } catch {
      // Exited between the listing and the read.
    }
  }
  return pids;
}

/** Reads every process of the pipeline now. */
export function snapshotCpu(of: PipelineProcesses): CpuSnapshot {
  const micros = new Map<string, number>();
  const add = (role: PipelineRole, pid: number) => {
    const used = processCpuMicros(pid);
    if (used !== null) micros.set(`${role}:${pid}`, used);
  };
  for (const pid of of.workers) add('workers', pid);
  for (const pid of of.redisMasters) add('redisMasters', pid);
  for (const pid of of.redisReplicas) add('redisReplicas', pid);
  for (const pid of postgresBackends(of.database)) if (!of.excludeBackends.has(pid)) add('postgres', pid);
  return { micros };
}

/**
 * CPU per role between two snapshots. A process first seen in `after` (a backend a pool opened during the window)
 * counts whole: it was born in the window. `apiMicros` is the calling process's share, measured by the caller.
 */
export function cpuBetween(before: CpuSnapshot, after: CpuSnapshot, apiMicros: number): PipelineCpu {
  const cpu: PipelineCpu = { api: apiMicros, workers: 0, redisMasters: 0, redisReplicas: 0, postgres: 0 };
  for (const [key, used] of after.micros) {
    const role = key.slice(0, key.indexOf(':')) as PipelineRole;
    cpu[role] += Math.max(0, used - (before.micros.get(key) ?? 0));
  }
  return cpu;
}

/** The sum over every role. */
export function totalCpu(cpu: PipelineCpu): number {
  return PIPELINE_ROLES.reduce((sum, role) => sum + cpu[role], 0);
}
