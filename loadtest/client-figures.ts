// Figures of the client model: the capacity C in events/s (a ramp of phases until delivery latency breaks its
// SLO), the overload plan around C, what each overload level delivered, and how long recovery took.
import { PRIORITIES } from '../lib/event-schema.js';
import type { ClientPhase, ClientPhaseResult, ClientSecond } from './client-model.js';

const RAMP_FACTOR = 1.25;
/** A ramp step fails when the generator tracked less than this share of the offered events. */
const MIN_TRACKED_SHARE = 0.9;

/** Whether a ramp step kept up: p99 delivery latency within the SLO, nothing dropped or given up, the offer tracked. */
export function clientStepOk(step: ClientPhaseResult, deliverySloMs: number): boolean {
  const lost = PRIORITIES.reduce((n, p) => n + step.fate[p].dropped + step.fate[p].failed, 0);
  return (
    step.latency.count > 0 &&
    step.latency.p99 <= deliverySloMs &&
    lost === 0 &&
    step.trackedPerSec >= MIN_TRACKED_SHARE * step.offeredPerSec
  );
}

/** Label of the ramp's first phase, which only warms up (connections, JIT) and is not judged. */
export const RAMP_WARM_UP = 'ramp warm-up';

/** Ramp phases: a warm-up at `start` events/s, then from `start` ×1.25 per step until a step breaks the SLO or `maxSeconds` is spent. */
export function clientRampPlan(start: number, stepSeconds: number, maxSeconds: number, deliverySloMs: number) {
  return (done: readonly ClientPhaseResult[]): ClientPhase | null => {
    if (done.length === 0) return { label: RAMP_WARM_UP, seconds: stepSeconds, eventsPerSec: start };
    const last = done.at(-1)!;
    if (last.label !== RAMP_WARM_UP && !clientStepOk(last, deliverySloMs)) return null;
    if ((done.length + 1) * stepSeconds > maxSeconds) return null;
    const rate = Math.round(start * RAMP_FACTOR ** (done.length - 1));
    return { label: `ramp ${rate}/s`, seconds: stepSeconds, eventsPerSec: rate };
  };
}

/** C from ramp steps: the offered rate of the last step that kept up before the first that did not (null: none did). */
export function clientCapacityOf(
  steps: readonly ClientPhaseResult[],
  deliverySloMs: number,
): { capacity: number | null; brokeAt: number | null } {
  let capacity: number | null = null;
  for (const s of steps.filter((x) => x.label !== RAMP_WARM_UP)) {
    if (!clientStepOk(s, deliverySloMs)) return { capacity, brokeAt: s.offeredPerSec };
    capacity = s.offeredPerSec;
  }
  return { capacity, brokeAt: null };
}

/** Labels of the overload plan's phases. */
export const CLIENT_LEVELS = {
  warmUp: 'warm-up ½C',
  unloaded: 'unloaded ½C',
  double: '2×C',
  quadruple: '4×C',
  recovery: 'recovery ½C',
} as const;

/** ½C to warm up and as a reference, 2×C and 4×C for `seconds` each, then ½C to recover. */
export function clientOverloadPlan(capacity: number, seconds: number): ClientPhase[] {
  const half = Math.max(1, Math.round(capacity / 2));
  return [
    { label: CLIENT_LEVELS.warmUp, seconds: 3, eventsPerSec: half },
    { label: CLIENT_LEVELS.unloaded, seconds: Math.max(3, Math.round(seconds / 2)), eventsPerSec: half },
    { label: CLIENT_LEVELS.double, seconds, eventsPerSec: Math.round(2 * capacity) },
    { label: CLIENT_LEVELS.quadruple, seconds, eventsPerSec: Math.round(4 * capacity) },
    { label: CLIENT_LEVELS.recovery, seconds: Math.max(10, Math.round(seconds * 0.75)), eventsPerSec: half },
  ];
}

/** What one overload level came to. */
export interface ClientLevelFigures {
  level: string;
  offeredPerSec: number;
  trackedPerSec: number;
  deliveredPerSec: number;
  /** Delivered events/s over 0.9 C: ≥ 1 meets the aim. */
  deliveredOver09C: number;
  /** Of the critical events tracked in this level, the share delivered within 10 s, in %. */
  criticalWithin10sPct: number;
  criticalP99Ms: number;
  dropped: Record<(typeof PRIORITIES)[number], number>;
  shedRequests: number;
  rateLimitedRequests: number;
  throttled: number;
}

const pct = (part: number, whole: number) => (whole === 0 ? 100 : Math.floor((10000 * part) / whole) / 100);

/** The figures of a phase measured against C. */
export function clientLevelFigures(phase: ClientPhaseResult, capacity: number): ClientLevelFigures {
  const critical = phase.fate.critical;
  return {
    level: phase.label,
    offeredPerSec: phase.offeredPerSec,
    trackedPerSec: phase.trackedPerSec,
    deliveredPerSec: phase.deliveredPerSec,
    deliveredOver09C: Math.round((100 * phase.deliveredPerSec) / (0.9 * capacity)) / 100,
    criticalWithin10sPct: pct(critical.within10s, critical.tracked),
    criticalP99Ms: critical.latency.p99,
    dropped: { critical: phase.fate.critical.dropped, normal: phase.fate.normal.dropped, low: phase.fate.low.dropped },
    shedRequests: phase.shed,
    rateLimitedRequests: phase.rateLimited,
    throttled: phase.throttled,
  };
}

/** Seconds from the start of `phase` until `ok` held for every later second of it (null: never, or only in its last second). */
function secondsUntil(samples: readonly ClientSecond[], phase: string, ok: (s: ClientSecond) => boolean): number | null {
  const seconds = samples.filter((s) => s.phase === phase);
  let first = -1;
  for (let i = seconds.length - 1; i >= 0 && ok(seconds[i]!); i--) first = i;
  return first < 0 || first === seconds.length - 1 ? null : first;
}

/**
 * Seconds after the overload until the server was back to normal for the clients: from then on no 503 or 429
 * answers, nothing dropped, and critical events delivered with p99 within the SLO. Events the clients held back
 * during the overload are still being delivered then (see `clientBacklogSeconds`).
 */
export function clientRecoverySeconds(samples: readonly ClientSecond[], phase: string, deliverySloMs: number): number | null {
  return secondsUntil(
    samples,
    phase,
    (s) => s.shed === 0 && s.rateLimited === 0 && PRIORITIES.every((p) => s.dropped[p] === 0) && s.latency.critical.p99 <= deliverySloMs,
  );
}

/**
 * Seconds after the overload until the clients' backlog was delivered: from then on they held no more than
 * twice what they held on average during `reference` (the unloaded phase), i.e. only the batches filling up.
 * At a server capacity C, a backlog B built during the overload drains at (C − offered) events/s at best.
 */
export function clientBacklogSeconds(samples: readonly ClientSecond[], phase: string, reference: string): number | null {
  const ref = samples.filter((s) => s.phase === reference);
  if (ref.length === 0) return null;
  const normal = (2 * ref.reduce((n, s) => n + s.held, 0)) / ref.length;
  return secondsUntil(samples, phase, (s) => s.held <= normal);
}
