// Figures of the client model: the capacity C in events/s (a ramp of phases until delivery latency breaks its
// SLO), the overload plan around C, what each overload level delivered, and how long recovery took.
import { PRIORITIES } from '../lib/event-schema.js';
import type { ClientPhase, ClientPhaseResult, ClientSecond } from './client-model.js';

/** Each step of the search's first, geometric part offers this many times the last one that kept up. */
const RAMP_FACTOR = 1.5;
/** The bisection stops once the rate that failed is within this factor of the one that kept up. */
const BISECT_UNTIL = 1.1;
/** Below this many events/s the search gives up. */
const MIN_RATE = 10;
/** Seconds offering nothing after a step that failed, so that the next step does not inherit its backlog. */
const SETTLE_SECONDS = 3;
/** A ramp step fails when the generator tracked less than this share of the offered events. */
const MIN_TRACKED_SHARE = 0.9;
/**
 * A step keeps up while the clients' backlog grows by at most this many seconds of the tracked rate (batches
 * filling up: the SDK sends a batch at 100 events or after 1 s) plus this share of what the step tracked.
 */
const HELD_SECONDS = 1.5;
const HELD_GROWTH_SHARE = 0.1;

/**
 * Whether a ramp step kept up: the generator tracked the offer, nothing was dropped or given up, the clients'
 * backlog did not grow beyond batches filling up, and delivery p99 stayed within the SLO.
 */
export function clientStepOk(step: ClientPhaseResult, deliverySloMs: number): boolean {
  const lost = PRIORITIES.reduce((n, p) => n + step.fate[p].dropped + step.fate[p].failed, 0);
  const tracked = step.trackedPerSec * step.seconds;
  const heldGrowth = step.heldAtEnd - step.heldAtStart;
  return (
    step.latency.count > 0 &&
    step.latency.p99 <= deliverySloMs &&
    lost === 0 &&
    step.trackedPerSec >= MIN_TRACKED_SHARE * step.offeredPerSec &&
    step.heldAtEnd <= HELD_SECONDS * step.trackedPerSec + Math.max(0, step.heldAtStart) + HELD_GROWTH_SHARE * tracked &&
    heldGrowth <= HELD_SECONDS * step.trackedPerSec + HELD_GROWTH_SHARE * tracked
  );
}

/** Label of the ramp's first phase, which only warms up (connections, JIT) and is not judged. */
export const RAMP_WARM_UP = 'ramp warm-up';
/** Label of the pauses after a failed step; not judged. */
export const RAMP_SETTLE = 'ramp settle';

/** Whether a phase of the ramp is a judged step (not the warm-up nor a pause). */
export const isRampStep = (phase: { label: string }) =>
  phase.label.startsWith('ramp ') && phase.label !== RAMP_WARM_UP && phase.label !== RAMP_SETTLE;

/**
 * The search for C: a warm-up at `start` events/s, then steps of `stepSeconds`, each judged by `keptUp`
 * (clientStepOk, plus whatever else the caller checks, such as the worker keeping up):
 * - ×1.5 from `start` while steps keep up; if the first one does not, halving until one does;
 * - then bisection (geometric) between the highest rate that kept up and the lowest that did not, until they
 *   are within 10 %;
 * - a step that fails is repeated once before it counts (one noisy step on a shared machine must not end the
 *   search), after SETTLE_SECONDS offering nothing so that it does not inherit the backlog of the failure.
 * Ends when `maxSeconds` would be exceeded. C is then the highest rate that kept up (clientCapacityOf).
 */
export function clientRampPlan(start: number, stepSeconds: number, maxSeconds: number, keptUp: (step: ClientPhaseResult) => boolean) {
  let spent = 0;
  let lo: number | null = null;
  let hi: number | null = null;
  let failedOnce: number | null = null;
  let afterSettle: ClientPhase | null = null;
  const phase = (label: string, seconds: number, eventsPerSec: number): ClientPhase | null => {
    if (spent + seconds > maxSeconds) return null;
    spent += seconds;
    return { label, seconds, eventsPerSec };
  };
  const step = (rate: number, again = false) => phase(`ramp ${rate}/s${again ? ' again' : ''}`, stepSeconds, rate);
  /** The next rate to try, or null when the search is over. */
  const nextRate = (): number | null => {
    let rate: number;
    if (hi === null) rate = lo === null ? start : Math.round(lo * RAMP_FACTOR);
    else if (lo === null) rate = Math.round(hi / 2);
    else if (hi / lo <= BISECT_UNTIL) return null;
    else rate = Math.round(Math.sqrt(lo * hi));
    return rate < MIN_RATE ? null : rate;
  };
  /** A pause, then `next`: a failed step's backlog must not count against the next one. */
  const settleThen = (next: ClientPhase | null): ClientPhase | null => {
    if (!next) return null;
    afterSettle = next;
    return phase(RAMP_SETTLE, SETTLE_SECONDS, 0);
  };
  return (done: readonly ClientPhaseResult[]): ClientPhase | null => {
    const last = done.at(-1);
    if (!last) return phase(RAMP_WARM_UP, stepSeconds, start);
    if (last.label === RAMP_WARM_UP) return step(start);
    if (last.label === RAMP_SETTLE) return afterSettle;
    if (!isRampStep(last)) return null;
    const rate = last.offeredPerSec;
    if (keptUp(last)) {
      lo = Math.max(lo ?? 0, rate);
      if (hi !== null && lo >= hi) hi = null;
      failedOnce = null;
      const next = nextRate();
      return next === null ? null : step(next);
    }
    if (failedOnce !== rate) {
      // Once is noise until it happens again.
      failedOnce = rate;
      return settleThen(step(rate, true));
    }
    failedOnce = null;
    hi = Math.min(hi ?? Infinity, rate);
    const next = nextRate();
    return next === null ? null : settleThen(step(next));
  };
}

/**
 * C from the judged steps: the highest rate that kept up below the lowest that failed twice in a row (a rate
 * that failed once and then kept up is noise); null when none kept up.
 */
export function clientCapacityOf(
  steps: readonly ClientPhaseResult[],
  keptUp: (step: ClientPhaseResult) => boolean,
): { capacity: number | null; brokeAt: number | null } {
  const judged = steps.filter(isRampStep);
  let brokeAt: number | null = null;
  for (let i = 1; i < judged.length; i++) {
    const [a, b] = [judged[i - 1]!, judged[i]!];
    if (a.offeredPerSec === b.offeredPerSec && !keptUp(a) && !keptUp(b)) brokeAt = Math.min(brokeAt ?? Infinity, a.offeredPerSec);
  }
  let capacity: number | null = null;
  for (const s of judged)
    if (keptUp(s) && (brokeAt === null || s.offeredPerSec < brokeAt)) capacity = Math.max(capacity ?? 0, s.offeredPerSec);
  return { capacity, brokeAt };
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
