// Where the CPU went during a benchmark. Everything shares one machine here (load generator, API, worker,
// Redis, Postgres), so a figure such as "goodput at 2×C" depends on who got the cores. This module reads each
// role's CPU time from /proc once a second, fits what one admitted and one refused request cost the API
// process, and derives the best goodput one API process could give at an offered rate: an upper bound that
// says whether a shortfall is the controller's or the machine's.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

const CLOCK_TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** The roles whose CPU a benchmark accounts for. */
export const CPU_ROLES = ['api', 'generator', 'worker', 'redis', 'postgres'] as const;
export type CpuRole = (typeof CPU_ROLES)[number];
/** CPU time per role, in µs. */
export type CpuByRole = Record<CpuRole, number>;

/**
 * utime + stime of a process and all its threads, in µs (fields 14 and 15 of /proc/<pid>/stat); null once it
 * is gone. Synchronous on purpose: a meter reads it at the instant a sample is taken, not after the (possibly
 * saturated) event loop gets round to it.
 */
export function processCpuMicros(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces or parentheses: fields are counted after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return null;
  }
}

/** Pids of the processes whose command name is `comm` (every postgres backend and helper, say). */
export function pidsNamed(comm: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === comm) pids.push(Number(entry));
    } catch {
      // The process exited between the listing and the read.
    }
  }
  return pids;
}

/** Which processes play which role; the generator is the calling process. */
export interface CpuTargets {
  readonly api: number;
  readonly worker?: number;
  readonly redis?: number;
  /** Command name of the database's processes (backends come and go, so they are listed at every read). */
  readonly postgresComm?: string;
}

/** Reads each role's CPU since the previous `tick()`, and the wall-clock µs that covers. */
export interface CpuMeter {
  tick(): { cpu: CpuByRole; elapsedMicros: number };
}

/** A meter over `targets`; the first `tick()` returns the CPU since the meter was created. */
export function createCpuMeter(targets: CpuTargets): CpuMeter {
  type Reading = { at: number; micros: Map<string, number> };
  function read(): Reading {
    const micros = new Map<string, number>();
    const own = process.cpuUsage();
    micros.set('generator', own.user + own.system);
    const named: Array<[string, number]> = [['api', targets.api]];
    if (targets.worker !== undefined) named.push(['worker', targets.worker]);
    if (targets.redis !== undefined) named.push(['redis', targets.redis]);
    if (targets.postgresComm) for (const pid of pidsNamed(targets.postgresComm)) named.push([`postgres:${pid}`, pid]);
    for (const [key, pid] of named) {
      const used = processCpuMicros(pid);
      if (used !== null) micros.set(key, used);
    }
    return { at: performance.now(), micros };
  }
  let previous = read();
  return {
    tick() {
      const now = read();
      const cpu: CpuByRole = { api: 0, generator: 0, worker: 0, redis: 0, postgres: 0 };
      for (const [key, used] of now.micros) {
        // A process that was not there at the previous read (a new backend) counts from now on.
        const was = previous.micros.get(key);
        if (was === undefined) continue;
        const role = (key.startsWith('postgres:') ? 'postgres' : key) as CpuRole;
        cpu[role] += Math.max(0, used - was);
      }
      const elapsedMicros = (now.at - previous.at) * 1000;
      previous = now;
      return { cpu, elapsedMicros };
    },
  };
}

/** One second of a run with what the API answered and the CPU each role spent. */
export interface CpuSecond {
  readonly segment: string;
  /** 2xx answers. */
  readonly admitted: number;
  /** Every other answer (503 overloaded above all). */
  readonly refused: number;
  readonly cpu: CpuByRole;
  /** Wall-clock µs the CPU figures cover (about a second). */
  readonly elapsedMicros: number;
}

/** What one request costs the API process, fitted over the seconds of a run. */
export interface ApiCosts {
  /** µs of API CPU per admitted request. */
  readonly admittedMicros: number;
  /** µs per refused request; null when the seconds refused (almost) nothing. */
  readonly refusedMicros: number | null;
  readonly seconds: number;
}

/** Least squares: the coefficients b minimising |X b − y|², by the normal equations (small, well-scaled systems). */
export function leastSquares(rows: readonly (readonly number[])[], y: readonly number[]): number[] | null {
  const k = rows[0]?.length ?? 0;
  if (rows.length < k || k === 0) return null;
  const a = Array.from({ length: k }, (_, i) => [
    ...Array.from({ length: k }, (_, j) => rows.reduce((s, r) => s + r[i]! * r[j]!, 0)),
    rows.reduce((s, r, n) => s + r[i]! * y[n]!, 0),
  ]);
  for (let col = 0; col < k; col++) {
    let pivot = col;
    for (let r = col + 1; r < k; r++) if (Math.abs(a[r]![col]!) > Math.abs(a[pivot]![col]!)) pivot = r;
    if (Math.abs(a[pivot]![col]!) < 1e-9) return null;
    [a[col], a[pivot]] = [a[pivot]!, a[col]!];
    for (let r = 0; r < k; r++) {
      if (r === col) continue;
      const f = a[r]![col]! / a[col]![col]!;
      for (let c = col; c <= k; c++) a[r]![c]! -= f * a[col]![c]!;
    }
  }
  return a.map((row, i) => row[k]! / row[i]!);
}

/** Fewer refusals than this share of all answers, and the refusal cost is not identifiable. */
const MIN_REFUSED_SHARE = 0.05;

/**
 * Fits API CPU per second = A × admitted + R × refused over the given seconds (meant: the overloaded ones, where
 * a busy process answers many requests per wake-up and each costs least). With (almost) no refusals only A is
 * fitted. Null when nothing was answered.
 */
export function fitApiCosts(seconds: readonly CpuSecond[]): ApiCosts | null {
  // Counts are per sampled second; CPU is scaled to the exact interval the meter covered.
  const busy = seconds.filter((s) => s.admitted + s.refused > 0 && s.elapsedMicros > 0);
  const answers = busy.reduce((n, s) => n + s.admitted + s.refused, 0);
  const refused = busy.reduce((n, s) => n + s.refused, 0);
  const withRefusals = answers > 0 && refused / answers >= MIN_REFUSED_SHARE;
  const rows = busy.map((s) => (withRefusals ? [s.admitted, s.refused] : [s.admitted]));
  const fit = leastSquares(
    rows,
    busy.map((s) => (s.cpu.api * 1e6) / s.elapsedMicros),
  );
  if (!fit) return null;
  return {
    admittedMicros: Math.round(fit[0]! * 10) / 10,
    refusedMicros: withRefusals ? Math.round(fit[1]! * 10) / 10 : null,
    seconds: busy.length,
  };
}

/**
 * The most 2xx per second one API process could answer when `offered` requests arrive each second and every
 * one it does not admit is refused: admitted × A + (offered − admitted) × R ≤ one core. An upper bound: it
 * grants the API a whole core, which the load generator and the rest of the pipeline share here.
 */
export function goodputCeiling(costs: ApiCosts, offered: number): number {
  const core = 1e6;
  const refusal = costs.refusedMicros ?? 0;
  if (costs.admittedMicros <= refusal) return Math.min(offered, core / costs.admittedMicros);
  const admitted = (core - offered * refusal) / (costs.admittedMicros - refusal);
  return Math.max(0, Math.min(offered, admitted));
}

/** CPU share (1 = one core) of each role over the seconds of `segment`. */
export function cpuShares(seconds: readonly CpuSecond[], segment: string): CpuByRole & { total: number } {
  const of = seconds.filter((s) => s.segment === segment);
  const elapsed = of.reduce((sum, s) => sum + s.elapsedMicros, 0);
  const share = (role: CpuRole) => (elapsed === 0 ? 0 : of.reduce((sum, s) => sum + s.cpu[role], 0) / elapsed);
  const shares = Object.fromEntries(CPU_ROLES.map((r) => [r, Math.round(share(r) * 100) / 100])) as CpuByRole;
  return { ...shares, total: Math.round(CPU_ROLES.reduce((t, r) => t + share(r), 0) * 100) / 100 };
}
