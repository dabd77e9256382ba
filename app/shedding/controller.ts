import type { Priority } from '../../lib/event-schema.js';

/**
 * The adaptive shedding controller: a PI-style controller on one "shed level" L in [0, 2].
 *
 *   pressure  = max(p99 / targetP99, eventLoopDelayP99 / targetEventLoopDelay)   (1.0 = exactly at target)
 *   error     = pressure − 1
 *   L        += gainUp · error · dt        when error > 0          (climbs fast under overload)
 *   L        −= gainDown · |error| · dt    when error < −deadband  (the deadband is the hysteresis)
 *   L         = max(L, backlogFloor)       backlogFloor rises from 0 to 2 between the backlog watermarks
 *
 * L maps to smooth per-class shed probabilities: low sheds with probability clamp(L, 0, 1), normal with
 * clamp(L − 1, 0, 1): low is always shed entirely before normal starts. Critical is never shed by the
 * controller, only by the hard safety limits (in-flight requests or event-loop delay far past any target).
 * The deadband around the target keeps L still when pressure hovers near it (no on/off oscillation).
 */
export interface ControllerParams {
  /** Latency target for admitted requests' p99, in ms. */
  readonly targetP99Ms: number;
  /** Event-loop delay p99 target, in ms. */
  readonly targetEventLoopDelayMs: number;
  /** Shed level per second per unit of relative error while over target. */
  readonly gainUp: number;
  /** Shed level per second per unit of relative error while under target. */
  readonly gainDown: number;
  /** Relative error below target within which the level holds still. */
  readonly deadband: number;
  /** Stream backlog (entries) where non-critical shedding starts… */
  readonly backlogLowWatermark: number;
  /** …and where every non-critical request is shed. */
  readonly backlogHighWatermark: number;
  /** Critical requests are refused only past these hard limits. */
  readonly hardMaxInFlight: number;
  readonly hardEventLoopDelayMs: number;
}

/** What the controller reads on each tick. */
export interface Signals {
  readonly p99Ms: number;
  /** Admitted requests in the latency window; too few samples mean the p99 is not trusted. */
  readonly samples: number;
  readonly eventLoopDelayP99Ms: number;
  readonly backlog: number;
}

export interface ControllerState {
  readonly level: number;
  readonly pressure: number;
  readonly backlogFloor: number;
  readonly shedProbability: Readonly<Record<Priority, number>>;
}

export const DEFAULT_CONTROLLER_PARAMS: ControllerParams = {
  targetP99Ms: 50,
  targetEventLoopDelayMs: 40,
  gainUp: 1,
  gainDown: 2,
  deadband: 0.1,
  backlogLowWatermark: 200_000,
  backlogHighWatermark: 1_000_000,
  hardMaxInFlight: 2000,
  hardEventLoopDelayMs: 1000,
};

const MAX_LEVEL = 2;
const MIN_SAMPLES = 20;
// One tick may raise the level by at most this much, so a single outlier window cannot slam the gates; it may
// lower it faster, so that traffic is back within a couple of seconds once the pressure is gone (the deadband,
// not a slow release, is what keeps the level from oscillating).
const MAX_RISE = 0.1;
const MAX_FALL = 0.3;

const clamp = (v: number, lo: number, hi: number) => (v < lo ? lo : v > hi ? hi : v);

/** A controller instance: `tick` on a timer with fresh signals, `probability` on every request (O(1)). */
export interface ShedController {
  tick(signals: Signals, dtSeconds: number): ControllerState;
  /** Probability that a request of this class is shed now (critical: always 0; see `overHardLimit`). */
  probability(priority: Priority): number;
  /** Whether even critical requests must be refused: the process is past a hard safety limit. */
  overHardLimit(inFlight: number, eventLoopDelayMs: number): boolean;
  state(): ControllerState;
}

/** Creates a controller with the given parameters (see the module comment for the law). */
export function createShedController(params: ControllerParams = DEFAULT_CONTROLLER_PARAMS): ShedController {
  let level = 0;
  let pressure = 0;
  let backlogFloor = 0;
  let pLow = 0;
  let pNormal = 0;

  const snapshot = (): ControllerState => ({
    level: Math.max(level, backlogFloor),
    pressure,
    backlogFloor,
    shedProbability: { critical: 0, normal: pNormal, low: pLow },
  });

  return {
    tick(signals, dt) {
      const latencyRatio = signals.samples >= MIN_SAMPLES ? signals.p99Ms / params.targetP99Ms : 0;
      pressure = Math.max(latencyRatio, signals.eventLoopDelayP99Ms / params.targetEventLoopDelayMs);
      const error = pressure - 1;
      let step = 0;
      if (error > 0) step = params.gainUp * Math.min(error, 4) * dt;
      else if (error < -params.deadband) step = params.gainDown * error * dt;
      level = clamp(level + clamp(step, -MAX_FALL, MAX_RISE), 0, MAX_LEVEL);

      const span = params.backlogHighWatermark - params.backlogLowWatermark;
      backlogFloor = clamp(((signals.backlog - params.backlogLowWatermark) / span) * MAX_LEVEL, 0, MAX_LEVEL);

      const effective = Math.max(level, backlogFloor);
      pLow = clamp(effective, 0, 1);
      pNormal = clamp(effective - 1, 0, 1);
      return snapshot();
    },
    probability(priority) {
      return priority === 'low' ? pLow : priority === 'normal' ? pNormal : 0;
    },
    overHardLimit(inFlight, eventLoopDelayMs) {
      return inFlight >= params.hardMaxInFlight || eventLoopDelayMs >= params.hardEventLoopDelayMs;
    },
    state: snapshot,
  };
}
