import type { IncomingMessage } from 'node:http';
import { monitorEventLoopDelay, performance as perf, type EventLoopUtilization, type IntervalHistogram } from 'node:perf_hooks';
import type { Middleware } from 'koa';
import { Gauge, Histogram, type Registry } from 'prom-client';
import { FastCounter } from '../../lib/fast-metrics.js';
import type { Breaker, BreakerState } from '../../lib/breaker.js';
import type { Config } from '../../lib/config.js';
import { apiError, type ErrorAnswer } from '../../lib/errors.js';
import { PRIORITIES, type Priority } from '../../lib/event-schema.js';
import { createLatencyWindow, type LatencyWindow, type WindowSnapshot } from '../../lib/latency-window.js';
import type { Logger } from '../../lib/logger.js';
import type { QueueDepth } from '../../lib/queue.js';
import type { Redis } from '../../lib/redis.js';
import { streamShards } from '../../lib/shards.js';
import { jitteredRetryAfter } from '../retry-after.js';
import { admittedEarly, type IngestState } from '../state.js';
import {
  classTargets,
  controllerParams,
  createShedController,
  type ControllerState,
  type ShedController,
  type WindowSignal,
} from './controller.js';
import { CLASS_INDEX, createFairShare, type TenantLoad, type TenantView } from './fair-share.js';
import { createClassGates, GATED } from './gates.js';
import { createWorkLimit, type WorkLimitState } from './work-limit.js';

export type ShedMode = Config['shedMode'];
/**
 * Why a request was shed: latency pressure, the stream backlog past its watermarks, a hard limit, an open class
 * gate, or a wait for the non-critical in-flight limit past its timeout (or a full queue).
 */
export type ShedReason = 'controller' | 'backlog' | 'hard_limit' | 'breaker' | 'queue';

const TICK_MS = 250;
const BACKLOG_POLL_MS = 1000;
/** The latency window the controller reads: short enough to react within a second or two. */
const WINDOW_SECONDS = 2;
/** Decision latency is observed for one decision in this many, so measuring costs nothing noticeable. */
const DECISION_SAMPLE = 16;
/** Tenants shown in GET /v1/admin/load, those with the most demand first. */
const TOP_TENANTS = 10;
const EMPTY: WindowSnapshot = { count: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };

/** What GET /v1/admin/load shows. */
export interface LoadSnapshot {
  readonly mode: ShedMode;
  readonly controller: ControllerState;
  readonly signals: {
    p99Ms: number;
    samples: number;
    eventLoopDelayP99Ms: number;
    /** Event-loop utilisation over the latency window, 0–1: latency counts only while it is at least the busy share. */
    loopUtilization: number;
    backlogEntries: number;
    inFlight: number;
    /** Each class's own latency window: p99 (ms) and samples over the controller's window. */
    classes: Record<Priority, WindowSignal>;
  };
  /** Fair shedding: tenants tracked, how many are shed now, and those with the most demand. */
  readonly fairness: { tenants: number; shedTenants: number; top: TenantView[] };
  readonly targets: {
    p99Ms: number;
    /** Each class's own p99 target, in ms. */
    classP99Ms: Record<Priority, number>;
    noncriticalMaxInFlight: number;
    queueTimeoutMs: number;
    refusalDelayMs: number;
    eventLoopDelayMs: number;
    busyLoopPercent: number;
    backlogLowEntries: number;
    backlogHighEntries: number;
    hardMaxInFlight: number;
    hardEventLoopDelayMs: number;
  };
  /** Every breaker this process has: the dependency breakers passed in and the class gates. */
  readonly breakers: Record<string, BreakerState>;
  readonly gates: { openAfterMs: number; resetTimeoutMs: number };
  /** The adaptive limit on normal and low requests in flight, and who waits for it. */
  readonly workLimit: WorkLimitState;
}

/** The 503 overloaded answer (message and jittered Retry-After), the same wherever a request is refused. */
export function overloadedAnswer(priority: Priority, random: () => number = Math.random): ErrorAnswer {
  return {
    code: 'overloaded',
    message: `shedding ${priority} traffic; retry later`,
    headers: { 'Retry-After': jitteredRetryAfter(random) },
  };
}

export interface Shedder {
  /**
   * Admission control for ingest: runs after authentication, before the body is read. A request counts as in
   * flight, and its time in the latency window, only from the moment its body has been read: waiting for a
   * client's upload is the client's time, not the server's work.
   */
  middleware(): Middleware<IngestState>;
  /**
   * The same decision for a request whose class is known from its X-Priority header and whose tenant is known
   * from the key cache, taken before Koa, routing and authentication, so that refusing costs as little as
   * possible. Counts the shed; returns the reason to refuse (enforce mode only), null to admit, or undefined
   * when it cannot decide synchronously (a class gate's half-open trial) or is not enforcing, in which case the
   * middleware decides as usual.
   */
  decideEarly(priority: Priority, tenant: string): ShedReason | null | undefined;
  /**
   * How long to hold the answer to a refused request of this class before sending it, in ms (0: at once):
   * SHED_REFUSAL_DELAY_MS for normal and low in enforce mode, 0 for critical. A closed-loop client that comes
   * straight back after a refusal then sends one request per connection per delay, not as fast as the server
   * can refuse: refusals cost about 0.4 of an admission, and a flood of them fills the event loop that
   * critical requests need.
   */
  refusalDelayMs(priority: Priority): number;
  snapshot(): LoadSnapshot;
  /** One controller step now (the timer calls it every 250 ms; tests call it directly). */
  tick(): void;
  close(): Promise<void>;
}

export interface ShedderDeps {
  readonly config: Config;
  readonly latency: LatencyWindow;
  /** The backlog is the length of the Redis stream… */
  readonly redis?: Redis;
  /** …or, when given (QUEUE=postgres), what this answers. */
  readonly queueDepth?: QueueDepth;
  readonly registry: Registry;
  readonly logger: Logger;
  readonly controller?: ShedController;
  /** Dependency breakers (the Redis write) shown in the snapshot. */
  readonly dependencies?: readonly Breaker[];
  /** Injected for tests; Math.random otherwise. */
  readonly random?: () => number;
  /** A tenant's weight in fair shedding (its share of the admitted rate relative to others); 1 by default. */
  readonly weightOf?: (tenant: string) => number;
}

function shedMetrics(registry: Registry, config: Config) {
  const registers = [registry];
  const metrics = {
    // Counted on every refusal, most of the answers under overload: a FastCounter, not prom-client's label hashing.
    shed: new FastCounter<'priority' | 'reason'>({
      name: 'floodgate_shed_requests_total',
      help: 'Requests refused (or, in shadow mode, that would have been) by priority and reason.',
      labelNames: ['priority', 'reason'],
      registers,
    }),
    level: new Gauge({
      name: 'floodgate_shed_level',
      help: 'Controller shed level, 0 (admit all) to 2 (shed all non-critical).',
      registers,
      aggregator: 'average',
    }),
    pressure: new Gauge({
      name: 'floodgate_shed_pressure',
      help: 'Controller pressure: the worst of latency and event-loop delay relative to target (1 = at target).',
      registers,
      aggregator: 'max',
    }),
    probability: new Gauge({
      name: 'floodgate_shed_probability',
      help: 'Probability that a request of this class is shed now.',
      labelNames: ['priority'],
      registers,
      aggregator: 'average',
    }),
    targetP99: new Gauge({
      name: 'floodgate_shed_target_p99_seconds',
      help: 'The latency SLO the controller holds.',
      registers,
      aggregator: 'max',
    }),
    classWindowP99: new Gauge({
      name: 'floodgate_shed_class_window_p99_seconds',
      help: "Sliding-window p99 of each class's admitted requests, as the controller sees it.",
      labelNames: ['priority'],
      registers,
      aggregator: 'max',
    }),
    classTargetP99: new Gauge({
      name: 'floodgate_shed_class_target_p99_seconds',
      help: 'The latency target of each class.',
      labelNames: ['priority'],
      registers,
      aggregator: 'max',
    }),
    classPressure: new Gauge({
      name: 'floodgate_shed_class_pressure',
      help: "Each class's p99 over its own target (0 while it has too few samples).",
      labelNames: ['priority'],
      registers,
      aggregator: 'max',
    }),
    workLimit: new Gauge({
      name: 'floodgate_shed_noncritical_limit',
      help: 'Normal and low requests allowed in flight now (the adaptive limit; 0 when off).',
      registers,
      aggregator: 'sum',
    }),
    workInFlight: new Gauge({
      name: 'floodgate_shed_noncritical_in_flight',
      help: 'Normal and low requests holding a slot of the limit.',
      registers,
      aggregator: 'sum',
    }),
    queued: new Gauge({
      name: 'floodgate_shed_queued_requests',
      help: 'Normal and low requests waiting for the in-flight limit, by priority.',
      labelNames: ['priority'],
      registers,
      aggregator: 'sum',
    }),
    windowP99: new Gauge({
      name: 'floodgate_shed_window_p99_seconds',
      help: 'Sliding-window p99 of admitted requests, as the controller sees it.',
      registers,
      aggregator: 'max',
    }),
    eventLoopDelay: new Gauge({
      name: 'floodgate_shed_event_loop_delay_p99_seconds',
      help: 'Event-loop delay p99 over the last controller tick.',
      registers,
      aggregator: 'max',
    }),
    loopUtilization: new Gauge({
      name: 'floodgate_shed_loop_utilization',
      help: 'Share of the latency window the event loop was busy (0–1). Latency over its target counts as overload only at SHED_BUSY_LOOP_PERCENT or more.',
      registers,
      aggregator: 'max',
    }),
    backlog: new Gauge({
      name: 'floodgate_shed_backlog_entries',
      help: 'Stream entries not yet written, as last polled by the API.',
      registers,
      aggregator: 'max',
    }),
    shedTenants: new Gauge({
      name: 'floodgate_shed_tenants_over_share',
      help: 'Tenants above their fair share whose requests are being shed.',
      registers,
      aggregator: 'max',
    }),
    mode: new Gauge({
      name: 'floodgate_shed_mode',
      help: 'The active shedding mode (1 for the active one).',
      labelNames: ['mode'],
      registers,
      aggregator: 'max',
    }),
    decision: new Histogram({
      name: 'floodgate_shed_decision_duration_seconds',
      help: 'Time to decide admission for one request (sampled 1 in 16).',
      buckets: [0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.001],
      registers,
    }),
  };
  metrics.targetP99.set(config.shedTargetP99Ms / 1000);
  for (const mode of ['off', 'shadow', 'enforce'] as const) metrics.mode.set({ mode }, mode === config.shedMode ? 1 : 0);
  for (const p of PRIORITIES) metrics.shed.inc({ priority: p, reason: 'controller' }, 0);
  for (const p of GATED) metrics.shed.inc({ priority: p, reason: 'breaker' }, 0);
  for (const p of GATED) metrics.shed.inc({ priority: p, reason: 'queue' }, 0);
  const targets = classTargets(config);
  for (const p of PRIORITIES) metrics.classTargetP99.set({ priority: p }, targets[p] / 1000);
  return metrics;
}

/**
 * Adaptive admission control. A timer feeds the controller (latency window, event-loop delay, stream backlog
 * polled once a second) and shares the shedding it asks for fairly between tenants (`fair-share.ts`); each
 * request then costs a map lookup and one random draw against its tenant's probability for its class, O(1)
 * and before its body is read, so a shed request is far cheaper than an admitted one. The class gates
 * (`gates.ts`) refuse a class outright once it has been shed entirely for a while.
 *
 * The latency window holds the server's own work: from the moment an admitted request's body has been read to
 * its answer. A client uploading slowly (or stalling) spends its own time, which says nothing about the
 * server's load; counted, twenty slow uploads a second on an idle server made the controller refuse other
 * tenants' traffic. A stall of the server itself shows in the event-loop delay, the controller's other signal.
 * For the same reason a request counts as in flight (the hard limit) only once its body is read.
 */
export function createShedder(deps: ShedderDeps): Shedder {
  const { config, latency, redis, logger } = deps;
  const log = logger.child({ scope: 'shedder' });
  const random = deps.random ?? Math.random;
  const controller = deps.controller ?? createShedController(controllerParams(config));
  const metrics = shedMetrics(deps.registry, config);
  const fair = createFairShare(deps.weightOf);
  const gates = createClassGates(config, deps.registry, logger, (priority) => fair.classFullyShed(priority));
  // Each class's own window (critical has a tighter target than the rest); the all-class one stays the fallback.
  const classWindows = Object.fromEntries(PRIORITIES.map((p) => [p, createLatencyWindow(WINDOW_SECONDS + 1)])) as Record<
    Priority,
    LatencyWindow
  >;
  const workLimit = createWorkLimit({
    maxLimit: config.shedMode === 'enforce' ? config.shedNoncriticalMaxInFlight : 0,
    queueTimeoutMs: config.shedQueueTimeoutMs,
    maxQueued: config.shedHardMaxInFlight,
  });
  const loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();

  let inFlight = 0;
  /** Tenants with at least one request in flight: the hard limit's fair share is inFlight over these. */
  let tenantsInFlight = 0;
  let backlog = 0;
  let eventLoopDelayMs = 0;
  // Event-loop utilisation readings of the last WINDOW_SECONDS of ticks: busy time over the latency window.
  const eluReadings: EventLoopUtilization[] = [perf.eventLoopUtilization()];
  let loopUtilization = 0;
  const signalOf = (w: WindowSnapshot): WindowSignal => ({ p99Ms: w.p99, samples: w.count });
  let lastSignals = { p99Ms: 0, samples: 0, classes: { critical: signalOf(EMPTY), normal: signalOf(EMPTY), low: signalOf(EMPTY) } };
  let lastTick = performance.now();
  let decisions = 0;
  // What currently sets the shed level: the backlog floor when it is at least the latency-driven level.
  let drawReason: ShedReason = 'controller';
  let lastLogged = 0;
  let heldOffBefore = 0;

  function tick(): void {
    const now = performance.now();
    const dt = Math.min((now - lastTick) / 1000, 1);
    lastTick = now;
    const window = latency.snapshot(WINDOW_SECONDS);
    // max rather than p99: with 10 ms resolution a 250 ms tick holds few samples, and one stall is the signal.
    eventLoopDelayMs = Number.isFinite(loopDelay.max) ? loopDelay.max / 1e6 : 0;
    loopDelay.reset();
    const elu = perf.eventLoopUtilization();
    loopUtilization = perf.eventLoopUtilization(elu, eluReadings[0]).utilization;
    eluReadings.push(elu);
    if (eluReadings.length > (WINDOW_SECONDS * 1000) / TICK_MS) eluReadings.shift();
    const classes = {
      critical: signalOf(classWindows.critical.snapshot(WINDOW_SECONDS)),
      normal: signalOf(classWindows.normal.snapshot(WINDOW_SECONDS)),
      low: signalOf(classWindows.low.snapshot(WINDOW_SECONDS)),
    };
    lastSignals = { p99Ms: window.p99, samples: window.count, classes };
    const state = controller.tick(
      { p99Ms: window.p99, samples: window.count, classes, eventLoopDelayP99Ms: eventLoopDelayMs, backlog, loopUtilization },
      dt,
    );
    workLimit.update(state.classPressure.critical);
    const limitState = workLimit.state();
    metrics.workLimit.set(limitState.enabled ? limitState.limit : 0);
    metrics.workInFlight.set(limitState.inFlight);
    for (const p of GATED) metrics.queued.set({ priority: p }, limitState.queued[p]);
    for (const p of PRIORITIES) {
      metrics.classWindowP99.set({ priority: p }, classes[p].p99Ms / 1000);
      metrics.classPressure.set({ priority: p }, state.classPressure[p]);
    }
    fair.update(Math.max(dt, 1e-3), (p) => controller.probability(p));
    metrics.level.set(state.level);
    metrics.pressure.set(state.pressure);
    metrics.windowP99.set(window.p99 / 1000);
    metrics.eventLoopDelay.set(eventLoopDelayMs / 1000);
    metrics.loopUtilization.set(loopUtilization);
    metrics.shedTenants.set(fair.counts().shed);
    for (const p of PRIORITIES) metrics.probability.set({ priority: p }, state.shedProbability[p]);
    drawReason = state.backlogFloor > 0 && state.backlogFloor >= state.level ? 'backlog' : 'controller';
    gates.update();
    if (state.normalHeldOffSeconds > heldOffBefore) {
      log.warn(
        { mode: config.shedMode, holdOffSeconds: state.normalHeldOffSeconds, pressure: state.pressure },
        'shedding normal traffic did not relieve the pressure: admitting it again, low traffic stays shed',
      );
    }
    heldOffBefore = state.normalHeldOffSeconds;
    if (state.level > 0 && Date.now() - lastLogged > 10_000) {
      lastLogged = Date.now();
      // shedLevel, not level: pino's own `level` field carries the log level, and a second one would shadow it.
      log.warn(
        {
          mode: config.shedMode,
          shedLevel: state.level,
          pressure: state.pressure,
          backlog,
          p99Ms: window.p99,
          tenantsShed: fair.counts().shed,
        },
        'shedding non-critical traffic',
      );
    }
  }

  // Never queue polls on a disconnected client: they would pile up in its offline queue.
  // The backlog is every shard's stream together (one XLEN per shard; a single stream without sharding).
  const shardKeys = streamShards(config).map((s) => s.streamKey);
  const streamDepth: QueueDepth = async () =>
    redis?.status === 'ready' ? (await Promise.all(shardKeys.map((key) => redis.xlen(key)))).reduce((a, b) => a + b, 0) : undefined;
  const queueDepth = deps.queueDepth ?? streamDepth;

  async function pollBacklog(): Promise<void> {
    try {
      const depth = await queueDepth();
      if (depth === undefined) return;
      backlog = depth;
      metrics.backlog.set(backlog);
    } catch {
      // Queue unreachable: keep the last value; the write path reports the outage itself.
    }
  }

  const ticker = setInterval(tick, TICK_MS);
  ticker.unref();
  const poller = setInterval(() => void pollBacklog(), BACKLOG_POLL_MS);
  poller.unref();
  void pollBacklog();

  /**
   * Past a hard limit the process refuses even critical requests, but fairly: a tenant holding less than an
   * equal share of what is in flight (nothing, for a quiet one) is still admitted, so one tenant's flood of
   * critical requests fills its own share, not the process. The process may exceed the limit by at most one
   * request per tenant.
   */
  function overHardLimit(load: TenantLoad): boolean {
    if (!controller.overHardLimit(inFlight, eventLoopDelayMs)) return false;
    return load.inFlight > 0 && load.inFlight * tenantsInFlight >= inFlight;
  }

  function draw(priority: Priority, load: TenantLoad): ShedReason | null {
    const p = load.shed[CLASS_INDEX[priority]]!;
    return p > 0 && random() < p ? drawReason : null;
  }

  /** Hard limits, then the class gate, then the tenant's draw; a promise only for a gate's trial. */
  function decide(priority: Priority, load: TenantLoad): ShedReason | null | Promise<ShedReason | null> {
    load.offered[CLASS_INDEX[priority]]!++;
    if (overHardLimit(load)) return 'hard_limit';
    const gated = gates.refuses(priority);
    if (gated === false) return draw(priority, load);
    if (gated === true) return 'breaker';
    return gated.then((refused) => (refused ? 'breaker' : draw(priority, load)));
  }

  /**
   * Counts the request as in flight from the moment its body has been read; returns what to do when it is
   * answered. `slotHeld`: it already holds a slot of the non-critical limit; otherwise it takes one (without
   * waiting) once its body has been read.
   */
  function trackWork(req: IncomingMessage, load: TenantLoad, priority: Priority, slotHeld: boolean): () => void {
    let bodyReadAt = 0;
    const onBodyRead = () => {
      bodyReadAt = performance.now();
      inFlight++;
      if (load.inFlight++ === 0) tenantsInFlight++;
      if (!slotHeld) workLimit.enter(priority);
    };
    req.once('end', onBodyRead);
    return () => {
      if (bodyReadAt === 0) {
        req.off('end', onBodyRead);
        if (slotHeld) workLimit.release(priority);
        return;
      }
      inFlight--;
      if (--load.inFlight === 0) tenantsInFlight--;
      workLimit.release(priority);
      const ms = performance.now() - bodyReadAt;
      latency.record(ms);
      classWindows[priority].record(ms);
    };
  }

  const refusalDelayMs = (priority: Priority) => (config.shedMode === 'enforce' && priority !== 'critical' ? config.shedRefusalDelayMs : 0);

  return {
    tick,
    refusalDelayMs,
    decideEarly(priority, tenant) {
      if (config.shedMode !== 'enforce') return undefined;
      // A gate's half-open trial answers asynchronously: leave it to the middleware, before firing it here.
      if (gates.halfOpen(priority)) return undefined;
      const decided = decide(priority, fair.load(tenant)) as ShedReason | null;
      if (decided) metrics.shed.inc({ priority, reason: decided });
      return decided;
    },
    middleware() {
      return async (ctx, next) => {
        const load = fair.load(ctx.state.grant.tenant);
        const { priority } = ctx.state;
        // Admitted by decideEarly: one decision per request, or the effective shed probability would compound.
        const early = admittedEarly.has(ctx.req);
        if (config.shedMode !== 'off' && !early) {
          const sampled = ++decisions % DECISION_SAMPLE === 0;
          const started = sampled ? performance.now() : 0;
          const decided = decide(priority, load);
          const reason = decided instanceof Promise ? await decided : decided;
          if (sampled) metrics.decision.observe((performance.now() - started) / 1000);
          if (reason) {
            metrics.shed.inc({ priority, reason });
            if (config.shedMode === 'enforce') {
              // Refused before the body is read or parsed: a shed request costs a fraction of an admitted one.
              const delay = refusalDelayMs(priority);
              if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
              const answer = overloadedAnswer(priority, random);
              throw apiError(answer.code, answer.message, undefined, answer.headers);
            }
          }
        }
        // The in-flight limit on normal and low work (enforce mode only). Only a request whose body has arrived
        // in full waits for it: waiting then costs a socket and a body already in memory, no CPU. One whose body
        // is still arriving goes on and counts against the limit once it is read, so that slow uploads can
        // neither hold slots nor the queue.
        let waits = ctx.req.complete;
        if (!waits && workLimit.wouldWait(priority)) {
          // A body sent with its headers is parsed only after the request's headers have been handled, and this
          // middleware usually runs within that: `complete` is still false for nearly every request here, and the
          // limit held nothing back (measured: hundreds of low requests in flight under a limit of 15). One turn
          // of the event loop later such a body is in; a client still sending its body is not kept waiting.
          await new Promise<void>((resolve) => setImmediate(resolve));
          waits = ctx.req.complete;
        }
        if (waits) {
          const slot = workLimit.acquire(priority);
          const granted = slot === true || (slot !== false && (await slot));
          if (!granted) {
            metrics.shed.inc({ priority, reason: 'queue' });
            const answer = overloadedAnswer(priority, random);
            throw apiError(answer.code, answer.message, undefined, answer.headers);
          }
        }
        const done = trackWork(ctx.req, load, priority, waits);
        try {
          await next();
        } finally {
          done();
        }
      };
    },
    snapshot() {
      const counts = fair.counts();
      return {
        mode: config.shedMode,
        controller: controller.state(),
        signals: { ...lastSignals, eventLoopDelayP99Ms: eventLoopDelayMs, loopUtilization, backlogEntries: backlog, inFlight },
        fairness: { tenants: counts.tenants, shedTenants: counts.shed, top: fair.top(TOP_TENANTS) },
        targets: {
          p99Ms: config.shedTargetP99Ms,
          classP99Ms: classTargets(config),
          noncriticalMaxInFlight: config.shedNoncriticalMaxInFlight,
          refusalDelayMs: config.shedRefusalDelayMs,
          queueTimeoutMs: config.shedQueueTimeoutMs,
          eventLoopDelayMs: config.shedTargetEventLoopDelayMs,
          busyLoopPercent: config.shedBusyLoopPercent,
          backlogLowEntries: config.shedBacklogLowEntries,
          backlogHighEntries: config.shedBacklogHighEntries,
          hardMaxInFlight: config.shedHardMaxInFlight,
          hardEventLoopDelayMs: config.shedHardEventLoopDelayMs,
        },
        breakers: Object.fromEntries([...(deps.dependencies ?? []), ...gates.breakers].map((b) => [b.name, b.state()])),
        gates: { openAfterMs: config.gateOpenAfterMs, resetTimeoutMs: config.gateResetTimeoutMs },
        workLimit: workLimit.state(),
      };
    },
    async close() {
      clearInterval(ticker);
      clearInterval(poller);
      loopDelay.disable();
      gates.shutdown();
      workLimit.close();
    },
  };
}
