// What drove the shedder during a benchmark: GET /v1/admin/load (the controller's signals and state) and the
// refusal counters by reason from the metrics endpoint, read every 250 ms and summed per phase, so that a
// figure such as "delivered 0.6 × 0.9 C" comes with the signal that made the shedder refuse.
import type { LoadSnapshot } from '../app/shedding/shedder.js';
import { PRIORITIES, type Priority } from '../lib/event-schema.js';
import { quantileBetween, scrape } from './scrape.js';

/** The signals the controller compares with their targets, plus what refuses outside its level. */
export const SHED_SIGNALS = ['critical p99', 'normal p99', 'low p99', 'event-loop delay', 'backlog'] as const;
export type ShedSignal = (typeof SHED_SIGNALS)[number];

/** One phase's summary of what the shedder saw and did. */
export interface PhaseLoad {
  readonly phase: string;
  readonly samples: number;
  /** Refusals counted by the API in the phase, by reason (controller, backlog, queue, hard_limit, breaker). */
  readonly refusedByReason: Record<string, number>;
  /** Of the samples with a shed level > 0, the share in which each signal was the one setting it. */
  readonly drivenBy: Record<ShedSignal, number>;
  /** Samples with a shed level > 0, over all samples. */
  readonly sheddingShare: number;
  /** The API's event-loop utilisation over the latency window: mean and highest (0–1). */
  readonly loopUtilization: { mean: number; max: number };
  /** Samples in which latency over target did not count (the loop was not busy enough), over all samples. */
  readonly latencyIgnoredShare: number;
  readonly meanLevel: number;
  /** Mean and highest of each signal over its target (1 = at target). */
  readonly pressure: Record<ShedSignal, { mean: number; max: number }>;
  /** Highest p99 (ms) of each class's window. */
  readonly maxClassP99Ms: Record<Priority, number>;
  readonly maxBacklog: number;
  /** Lowest non-critical in-flight limit, and most requests waiting for it. */
  readonly minWorkLimit: number;
  readonly maxQueued: number;
  /** p99 of the stream write (the enqueue script or XADD, Redis's round trip) over the phase, ms; null without writes. */
  readonly redisWriteP99Ms: number | null;
  /** Mean events per accepted request. */
  readonly eventsPerRequest: number | null;
}

interface Sample {
  readonly phase: string;
  readonly load: LoadSnapshot;
  readonly shed: Map<string, number>;
  readonly redisWrite: Map<number, number>;
  /** floodgate_request_events: sum and count. */
  readonly batch: { sum: number; count: number };
}

/** Cumulative bucket counts of a histogram, summed over every series whose labels include `match`. */
function bucketsWith(text: string, name: string, match = ''): Map<number, number> {
  const out = new Map<number, number>();
  const re = new RegExp(`^${name}_bucket\\{([^}]*)\\} (\\S+)$`, 'gm');
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (!m[1]!.includes(match)) continue;
    const le = /le="([^"]+)"/.exec(m[1]!)?.[1];
    if (le === undefined) continue;
    const bound = le === '+Inf' ? Infinity : Number(le);
    out.set(bound, (out.get(bound) ?? 0) + Number(m[2]));
  }
  return out;
}

/** A histogram's _sum and _count (every series). */
function sumCount(text: string, name: string): { sum: number; count: number } {
  const total = (suffix: string) => {
    let n = 0;
    const re = new RegExp(`^${name}_${suffix}(?:\\{[^}]*\\})? (\\S+)$`, 'gm');
    for (let m = re.exec(text); m; m = re.exec(text)) n += Number(m[1]);
    return n;
  };
  return { sum: total('sum'), count: total('count') };
}

const SHED_COUNTER = /^floodgate_shed_requests_total\{([^}]*)\} (\S+)$/gm;

/** The refusal counter's value per reason (every class summed). */
function shedByReason(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (let m = SHED_COUNTER.exec(text); m; m = SHED_COUNTER.exec(text)) {
    const reason = /reason="([^"]+)"/.exec(m[1]!)?.[1] ?? 'unknown';
    out.set(reason, (out.get(reason) ?? 0) + Number(m[2]));
  }
  return out;
}

/** Each signal over its target in one snapshot. */
function pressures(load: LoadSnapshot): Record<ShedSignal, number> {
  const span = load.targets.backlogHighEntries - load.targets.backlogLowEntries;
  return {
    'critical p99': load.controller.classPressure.critical,
    'normal p99': load.controller.classPressure.normal,
    'low p99': load.controller.classPressure.low,
    'event-loop delay': load.signals.eventLoopDelayP99Ms / load.targets.eventLoopDelayMs,
    // 1 where it would set the level to its maximum: the backlog floor is 0 at the low watermark, 2 at the high.
    backlog: Math.max(0, (load.signals.backlogEntries - load.targets.backlogLowEntries) / span),
  };
}

/** The signal that set the level in a snapshot: the backlog floor when it is the level, else the highest pressure. */
function driver(load: LoadSnapshot): ShedSignal {
  if (load.controller.backlogFloor > 0 && load.controller.backlogFloor >= load.controller.level) return 'backlog';
  const p = pressures(load);
  return (['critical p99', 'normal p99', 'low p99', 'event-loop delay'] as const).reduce((a, b) => (p[b] > p[a] ? b : a));
}

/** Sums the samples of each phase, in the order the phases were first seen. */
export function summarisePhases(samples: readonly Sample[]): PhaseLoad[] {
  const phases = [...new Set(samples.map((s) => s.phase))];
  return phases.map((phase) => {
    const own = samples.filter((s) => s.phase === phase);
    // The counters are cumulative: a phase's refusals are its last reading less the last reading before it.
    const previous = samples[samples.indexOf(own[0]!) - 1];
    const before = previous?.shed ?? new Map<string, number>();
    const after = own.at(-1)!.shed;
    const last = own.at(-1)!;
    const writeP99 = quantileBetween(previous?.redisWrite ?? new Map<number, number>(), last.redisWrite, 0.99);
    const requests = last.batch.count - (previous?.batch.count ?? 0);
    const refusedByReason = Object.fromEntries([...after].map(([r, v]) => [r, Math.round(v - (before.get(r) ?? 0))]));
    const shedding = own.filter((s) => s.load.controller.level > 0);
    const drivenBy = Object.fromEntries(SHED_SIGNALS.map((s) => [s, 0])) as Record<ShedSignal, number>;
    for (const s of shedding) drivenBy[driver(s.load)] += 1 / shedding.length;
    const all = own.map((s) => pressures(s.load));
    const pressure = Object.fromEntries(
      SHED_SIGNALS.map((sig) => [
        sig,
        { mean: all.reduce((n, p) => n + p[sig], 0) / all.length, max: Math.max(...all.map((p) => p[sig])) },
      ]),
    ) as PhaseLoad['pressure'];
    return {
      phase,
      samples: own.length,
      refusedByReason,
      drivenBy,
      sheddingShare: shedding.length / own.length,
      loopUtilization: {
        mean: own.reduce((n, s) => n + (s.load.signals.loopUtilization ?? 0), 0) / own.length,
        max: Math.max(...own.map((s) => s.load.signals.loopUtilization ?? 0)),
      },
      latencyIgnoredShare: own.filter((s) => s.load.controller.latencyCounted === false).length / own.length,
      meanLevel: own.reduce((n, s) => n + s.load.controller.level, 0) / own.length,
      pressure,
      maxClassP99Ms: Object.fromEntries(PRIORITIES.map((p) => [p, Math.max(...own.map((s) => s.load.signals.classes[p].p99Ms))])) as Record<
        Priority,
        number
      >,
      maxBacklog: Math.max(...own.map((s) => s.load.signals.backlogEntries)),
      minWorkLimit: Math.min(...own.map((s) => (s.load.workLimit.enabled ? s.load.workLimit.limit : Infinity))),
      maxQueued: Math.max(...own.map((s) => s.load.workLimit.queued.normal + s.load.workLimit.queued.low)),
      redisWriteP99Ms: writeP99 === null ? null : writeP99 * 1000,
      eventsPerRequest: requests > 0 ? (last.batch.sum - (previous?.batch.sum ?? 0)) / requests : null,
    };
  });
}

/** A watch over one Floodgate: `stop()` returns each phase's summary. */
export interface LoadWatch {
  stop(): Promise<PhaseLoad[]>;
}

/**
 * Reads `/v1/admin/load` (with an admin key) and the metrics endpoint every `intervalMs`, labelling each
 * reading with `phase()`; a reading that fails (the API saturated past the timeout) is skipped.
 */
export function watchLoad(options: {
  url: string;
  metricsUrl: string;
  adminKey: string;
  phase: () => string;
  intervalMs?: number;
}): LoadWatch {
  const samples: Sample[] = [];
  let busy = false;
  const read = async () => {
    if (busy) return;
    busy = true;
    const phase = options.phase();
    try {
      const [load, text] = await Promise.all([
        fetch(`${options.url}/v1/admin/load`, {
          headers: { authorization: `Bearer ${options.adminKey}` },
          signal: AbortSignal.timeout(2000),
        }).then((r) => (r.ok ? (r.json() as Promise<LoadSnapshot>) : null)),
        scrape(options.metricsUrl),
      ]);
      if (load && load.controller)
        samples.push({
          phase,
          load,
          shed: shedByReason(text),
          redisWrite: bucketsWith(text, 'floodgate_redis_write_duration_seconds', 'outcome="ok"'),
          batch: sumCount(text, 'floodgate_request_events'),
        });
    } catch {
      // Skipped: the next reading covers it (the counters are cumulative).
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void read(), options.intervalMs ?? 250);
  return {
    async stop() {
      clearInterval(timer);
      while (busy) await new Promise((r) => setTimeout(r, 20));
      return samples.length === 0 ? [] : summarisePhases(samples);
    },
  };
}

/** The summaries as a Markdown table. */
export function renderPhaseLoads(run: string, phases: readonly PhaseLoad[]): string[] {
  const pct = (v: number) => `${Math.round(v * 100)} %`;
  const x = (v: number) => v.toFixed(2);
  return phases.map((p) => {
    const refused = Object.entries(p.refusedByReason)
      .filter(([, v]) => v > 0)
      .map(([r, v]) => `${r} ${v}`)
      .join(', ');
    const drivers = SHED_SIGNALS.filter((s) => p.drivenBy[s] > 0)
      .map((s) => `${s} ${pct(p.drivenBy[s])}`)
      .join(', ');
    const press = (['critical p99', 'normal p99', 'low p99', 'event-loop delay'] as const)
      .map((s) => `${x(p.pressure[s].mean)}/${x(p.pressure[s].max)}`)
      .join(' · ');
    const limit = Number.isFinite(p.minWorkLimit) ? String(p.minWorkLimit) : 'off';
    return `| ${run} | ${p.phase} | ${refused || 'none'} | ${pct(p.sheddingShare)} (${x(p.meanLevel)}) | ${drivers || '-'} | ${x(p.loopUtilization.mean)}/${x(p.loopUtilization.max)} (${pct(p.latencyIgnoredShare)}) | ${press} | ${PRIORITIES.map((c) => Math.round(p.maxClassP99Ms[c])).join(' / ')} ms | ${p.maxBacklog} | ${limit} / ${p.maxQueued} | ${p.redisWriteP99Ms === null ? '-' : `${p.redisWriteP99Ms.toFixed(1)} ms`} | ${p.eventsPerRequest === null ? '-' : Math.round(p.eventsPerRequest)} |`;
  });
}

/** Header of the table renderPhaseLoads fills. */
export const PHASE_LOAD_HEADER = `| SHED_MODE | Phase | Refused by reason | Shedding (mean level) | Level set by | Loop utilisation mean/max (latency ignored) | Pressure mean/max: critical · normal · low · event-loop delay | Highest p99 crit / norm / low | Highest stream backlog | Work limit lowest / most queued | Stream write p99 | Events per request |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |`;
