import { defaultConfig, type Config } from '../../lib/config.js';
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
 *
 * Anti-windup for the normal class: shedding normal traffic must buy latency. While L is at its maximum (every
 * non-critical request refused), the pressure is watched in windows of `normalProbeSeconds`: its trend over a
 * window (a least-squares slope, robust to second-to-second noise) must bring it down by at least
 * `normalMinRelief` of its mean per window, unless it is already at target. If it does not fall, refusals are
 * not what limits latency — a refusal costs a Node process a sizeable fraction of an admission, and clients that
 * come straight back turn each shed normal request into another refusal — so shedding normal only throws goodput
 * away: L is held at 1 (low shed, normal admitted) for `normalHoldOffSeconds`, doubling after each futile probe
 * up to `normalMaxHoldOffSeconds`. Should the pressure (smoothed over PRESSURE_SMOOTHING_SECONDS) climb past
 * HOLD_OFF_ABORT_FACTOR × its value when the hold-off began, shedding normal was helping after all: the hold-off
 * ends and none is tried again until the pressure has stayed under target for RESET_AFTER_CALM_SECONDS (which
 * also resets the backoff). The backlog floor is never held: a stalled Postgres still sheds normal traffic at the
 * watermarks.
 */
export interface ControllerParams {
  /** Latency target for admitted requests' p99, in ms: the all-class window's, when no class has enough samples of its own. */
  readonly targetP99Ms: number;
  /** Latency target of each class's own p99, in ms (critical tighter than the rest). */
  readonly classTargetP99Ms: Readonly<Record<Priority, number>>;
  /** Event-loop delay p99 target, in ms. */
  readonly targetEventLoopDelayMs: number;
  /** Latency counts only while the loop was busy at least this share of the window (0–1; 0: always). */
  readonly busyLoopUtilization: number;
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
  /** Seconds at the maximum level after which shedding normal traffic must have relieved the pressure. */
  readonly normalProbeSeconds: number;
  /** Fall of the pressure over a probe window, relative to its mean there, that counts as relief. */
  readonly normalMinRelief: number;
  /** How long L is held at 1 after a futile probe, the first time… */
  readonly normalHoldOffSeconds: number;
  /** …doubling each time up to this. */
  readonly normalMaxHoldOffSeconds: number;
}

/** One latency window as the controller reads it: its p99 and how many samples it holds. */
export interface WindowSignal {
  readonly p99Ms: number;
  /** Admitted requests in the window; too few samples mean the p99 is not trusted. */
  readonly samples: number;
}

/** What the controller reads on each tick. */
export interface Signals extends WindowSignal {
  /** Each class's own window; when one has enough samples its p99 counts against its class's target. */
  readonly classes?: Readonly<Record<Priority, WindowSignal>>;
  readonly eventLoopDelayP99Ms: number;
  readonly backlog: number;
  /** Event-loop utilisation over the latency window (0–1), when measured; see `latencyCounts`. */
  readonly loopUtilization?: number;
}

export interface ControllerState {
  readonly level: number;
  readonly pressure: number;
  /** Each class's p99 over its own target (0 while the class has too few samples to be trusted). */
  readonly classPressure: Readonly<Record<Priority, number>>;
  readonly backlogFloor: number;
  /** Seconds left during which the controller does not shed normal traffic (a probe found it futile); 0 otherwise. */
  readonly normalHeldOffSeconds: number;
  readonly shedProbability: Readonly<Record<Priority, number>>;
  /** Whether latency counted in the last tick: false while the loop was not busy enough (see `latencyCounts`). */
  readonly latencyCounted: boolean;
}

/** The controller's own tuning: the parameters no configuration variable sets. */
const CONTROLLER_TUNING = {
  gainUp: 1,
  gainDown: 2,
  deadband: 0.1,
  normalProbeSeconds: 3,
  normalMinRelief: 0.05,
  normalHoldOffSeconds: 20,
  normalMaxHoldOffSeconds: 160,
} as const satisfies Partial<ControllerParams>;

/** Each class's latency target under `config`: 0 for critical means half the general target, 0 for low the general target. */
export function classTargets(config: Config): Record<Priority, number> {
  return {
    critical: config.shedTargetP99CriticalMs || config.shedTargetP99Ms / 2,
    normal: config.shedTargetP99Ms,
    low: config.shedTargetP99LowMs || config.shedTargetP99Ms,
  };
}

/** The controller's parameters under `config`: targets, watermarks and hard limits come from configuration only. */
export function controllerParams(config: Config): ControllerParams {
  return {
    ...CONTROLLER_TUNING,
    targetP99Ms: config.shedTargetP99Ms,
    classTargetP99Ms: classTargets(config),
    targetEventLoopDelayMs: config.shedTargetEventLoopDelayMs,
    busyLoopUtilization: config.shedBusyLoopPercent / 100,
    backlogLowWatermark: config.shedBacklogLowEntries,
    backlogHighWatermark: config.shedBacklogHighEntries,
    hardMaxInFlight: config.shedHardMaxInFlight,
    hardEventLoopDelayMs: config.shedHardEventLoopDelayMs,
  };
}

/** The parameters under the default configuration (lib/config.ts), not a second set of defaults. */
export const DEFAULT_CONTROLLER_PARAMS: ControllerParams = controllerParams(defaultConfig());

const MAX_LEVEL = 2;
const MIN_SAMPLES = 20;
// One tick may raise the level by at most this much, so a single outlier window cannot slam the gates; it may
// lower it faster, so that traffic is back within a couple of seconds once the pressure is gone (the deadband,
// not a slow release, is what keeps the level from oscillating).
const MAX_RISE = 0.1;
const MAX_FALL = 0.3;
/** Time constant of the smoothed pressure a hold-off is measured against (the latency window itself is 2 s). */
const PRESSURE_SMOOTHING_SECONDS = 1;
/** The level counts as at its maximum from here (the last rise may stop a hair short). */
const AT_MAX = MAX_LEVEL - 0.01;
/** Pressure under target this long means the overload is over: the next futile probe holds off the shortest time again. */
const RESET_AFTER_CALM_SECONDS = 10;
/** A hold-off ends early when the pressure climbs past this multiple of its value when the hold-off began. */
const HOLD_OFF_ABORT_FACTOR = 1.5;

/** Least-squares sums of (seconds into the window, pressure) over one probe window. */
const EMPTY_WINDOW = { n: 0, seconds: 0, t: 0, p: 0, tt: 0, tp: 0 } as const;

const clamp = (v: number, lo: number, hi: number) => (v < lo ? lo : v > hi ? hi : v);

/**
 * Whether latency over target is this process's overload: only while its event loop was busy enough. A request
 * is slow either because it queued behind the process's own work (the loop is busy: refusing work shortens the
 * queue) or because it waited on something refusing does not touch — Redis or Postgres answering late, the CPU
 * taken by other processes, many clients' batches arriving in the same instant. Measured with SDK clients on a
 * shared machine, critical p99 stayed 10–25× its target with every non-critical request refused and the API's
 * loop busy a third of the time: refusing threw deliveries away and bought no latency.
 */
export function latencyCounts(signals: Pick<Signals, 'loopUtilization'>, busyLoopUtilization: number): boolean {
  return signals.loopUtilization === undefined || signals.loopUtilization >= busyLoopUtilization;
}

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
  let classPressure: Record<Priority, number> = { critical: 0, normal: 0, low: 0 };
  let smoothedPressure = 0;
  let backlogFloor = 0;
  let pLow = 0;
  let pNormal = 0;
  // The probe of the normal class: least-squares sums of (time, pressure) over the current window at the maximum
  // level; then the hold-off, its next length, and the smoothed pressure when it began.
  let window: { readonly [K in keyof typeof EMPTY_WINDOW]: number } = EMPTY_WINDOW;
  let heldOffSeconds = 0;
  let nextHoldOff = params.normalHoldOffSeconds;
  let pressureAtHoldOff = 0;
  // Set when a hold-off made things worse: shedding normal helps in this overload, so it is not held off again.
  let normalProvenUseful = false;
  let calmSeconds = 0;
  let latencyCounted = true;

  const snapshot = (): ControllerState => ({
    level: Math.max(level, backlogFloor),
    pressure,
    classPressure,
    backlogFloor,
    normalHeldOffSeconds: Math.round(heldOffSeconds * 10) / 10,
    shedProbability: { critical: 0, normal: pNormal, low: pLow },
    latencyCounted,
  });

  /**
   * The worst of each class's p99 over its own target, among classes with enough samples to be trusted; the
   * all-class window against the general target only when no class has enough (a little traffic of each).
   */
  function latencyPressure(signals: Signals): number {
    const ratio = (w: WindowSignal, target: number) => (w.samples >= MIN_SAMPLES ? w.p99Ms / target : 0);
    const classes = signals.classes;
    classPressure = {
      critical: classes ? ratio(classes.critical, params.classTargetP99Ms.critical) : 0,
      normal: classes ? ratio(classes.normal, params.classTargetP99Ms.normal) : 0,
      low: classes ? ratio(classes.low, params.classTargetP99Ms.low) : 0,
    };
    const trusted = classes ? Object.values(classes).some((w) => w.samples >= MIN_SAMPLES) : false;
    return trusted ? Math.max(classPressure.critical, classPressure.normal, classPressure.low) : ratio(signals, params.targetP99Ms);
  }

  /** While at the maximum level: hold normal traffic off when a probe window ends without the pressure falling. */
  function judgeProbe(dt: number): void {
    if (level < AT_MAX || normalProvenUseful) {
      window = EMPTY_WINDOW;
      return;
    }
    const t = window.seconds;
    window = {
      n: window.n + 1,
      seconds: t + dt,
      t: window.t + t,
      p: window.p + pressure,
      tt: window.tt + t * t,
      tp: window.tp + t * pressure,
    };
    if (window.seconds < params.normalProbeSeconds) return;
    const { n } = window;
    const mean = window.p / n;
    const spread = window.tt - (window.t * window.t) / n;
    const slope = spread > 0 ? (window.tp - (window.t * window.p) / n) / spread : 0;
    const relieved = mean <= 1 || slope * window.seconds <= -params.normalMinRelief * mean;
    window = EMPTY_WINDOW;
    if (relieved) return;
    heldOffSeconds = nextHoldOff;
    pressureAtHoldOff = smoothedPressure;
    nextHoldOff = Math.min(nextHoldOff * 2, params.normalMaxHoldOffSeconds);
  }

  /** Counts the hold-off down; ends it (for the rest of this overload) if admitting normal made things worse. */
  function holdOff(dt: number): void {
    if (heldOffSeconds <= 0) return;
    heldOffSeconds = Math.max(0, heldOffSeconds - dt);
    if (smoothedPressure > HOLD_OFF_ABORT_FACTOR * pressureAtHoldOff) {
      heldOffSeconds = 0;
      normalProvenUseful = true;
    }
  }

  return {
    tick(signals, dt) {
      // Each class's pressure is still computed and shown (the in-flight limit reads critical's).
      const latencyRatio = latencyPressure(signals);
      latencyCounted = latencyCounts(signals, params.busyLoopUtilization);
      pressure = Math.max(latencyCounted ? latencyRatio : 0, signals.eventLoopDelayP99Ms / params.targetEventLoopDelayMs);
      smoothedPressure += (pressure - smoothedPressure) * (1 - Math.exp(-dt / PRESSURE_SMOOTHING_SECONDS));
      calmSeconds = pressure <= 1 ? calmSeconds + dt : 0;
      if (calmSeconds >= RESET_AFTER_CALM_SECONDS) {
        nextHoldOff = params.normalHoldOffSeconds;
        normalProvenUseful = false;
      }
      holdOff(dt);

      const error = pressure - 1;
      let step = 0;
      if (error > 0) step = params.gainUp * Math.min(error, 4) * dt;
      else if (error < -params.deadband) step = params.gainDown * error * dt;
      level = clamp(level + clamp(step, -MAX_FALL, MAX_RISE), 0, MAX_LEVEL);
      // Held off: back down to 1 at the ordinary release rate, and no further (no windup while held).
      if (heldOffSeconds > 0 && level > 1) level = Math.max(1, level - MAX_FALL);
      judgeProbe(dt);

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
