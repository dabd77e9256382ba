import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createShedController, DEFAULT_CONTROLLER_PARAMS, type ControllerParams, type ShedController } from '../app/shedding/controller.js';
import { CONFIG_VARIABLES } from '../lib/config.js';
import { PRIORITIES, type Priority } from '../lib/event-schema.js';

/**
 * A deterministic plant: a server with capacity C requests/s and a queue. Offered load arrives in a fixed
 * mix of classes; admitted load beyond capacity queues up, and the p99 the controller sees is the base
 * latency plus the queueing delay. Event-loop delay rises with utilisation.
 */
const CAPACITY = 1000;
const BASE_P99_MS = 10;
const MIX: Record<Priority, number> = { critical: 0.2, normal: 0.3, low: 0.5 };
const DT = 0.1;

interface Step {
  t: number;
  offered: number;
  admitted: number;
  admittedByClass: Record<Priority, number>;
  shedByClass: Record<Priority, number>;
  p99: number;
  level: number;
  heldOff: number;
}

function simulate(
  controller: ShedController,
  offeredAt: (t: number) => number,
  seconds: number,
  backlogAt: (t: number) => number = () => 0,
): Step[] {
  let queue = 0;
  const steps: Step[] = [];
  for (let t = 0; t < seconds; t += DT) {
    const offered = offeredAt(t);
    const admittedByClass = { critical: 0, normal: 0, low: 0 };
    const shedByClass = { critical: 0, normal: 0, low: 0 };
    for (const c of ['critical', 'normal', 'low'] as const) {
      const p = controller.probability(c);
      admittedByClass[c] = offered * MIX[c] * (1 - p);
      shedByClass[c] = offered * MIX[c] * p;
    }
    const admitted = admittedByClass.critical + admittedByClass.normal + admittedByClass.low;
    queue = Math.max(0, queue + (admitted - CAPACITY) * DT);
    const utilisation = Math.min(admitted / CAPACITY, 1);
    const p99 = BASE_P99_MS / Math.max(1 - 0.8 * utilisation, 0.2) + (queue / CAPACITY) * 1000;
    const eventLoopDelay = 2 + 30 * utilisation ** 4 + (queue > 0 ? 20 : 0);
    const state = controller.tick({ p99Ms: p99, samples: admitted, eventLoopDelayP99Ms: eventLoopDelay, backlog: backlogAt(t) }, DT);
    steps.push({ t, offered, admitted, admittedByClass, shedByClass, p99, level: state.level, heldOff: state.normalHeldOffSeconds });
  }
  return steps;
}

/**
 * A second plant, closer to a Node process under a closed-loop load generator: each class has a number of
 * connections that send their next request as soon as the last is answered (up to a per-second quota), the
 * server has one core, an admitted request costs ADMIT_MS of it and a refusal REFUSE_MS. Saturated, the
 * response time is what makes the work fit the core (Little's law), whatever is shed.
 */
const CONNECTIONS: Record<Priority, number> = { critical: 100, normal: 150, low: 250 };
const ADMIT_MS = 0.8;
const REFUSE_MS = 0.5;
const BASE_S = 0.01;

interface ClosedLoopStep {
  t: number;
  admitted: number;
  shedByClass: Record<Priority, number>;
  p99: number;
  level: number;
  heldOff: number;
}

function closedLoop(controller: ShedController, quotaPerConnection: number, seconds: number): ClosedLoopStep[] {
  const steps: ClosedLoopStep[] = [];
  for (let t = 0; t < seconds; t += DT) {
    const p = {
      critical: controller.probability('critical'),
      normal: controller.probability('normal'),
      low: controller.probability('low'),
    };
    const rates = (latency: number) =>
      PRIORITIES.map((c) => ({ c, rate: Math.min(CONNECTIONS[c] * quotaPerConnection, CONNECTIONS[c] / latency) }));
    const work = (latency: number) =>
      rates(latency).reduce((w, { c, rate }) => w + (rate * (p[c] * REFUSE_MS + (1 - p[c]) * ADMIT_MS)) / 1000, 0);
    let latency = BASE_S / Math.max(1 - 0.8 * work(BASE_S), 0.2);
    if (work(BASE_S) > 1) {
      let [lo, hi] = [BASE_S, 10];
      for (let i = 0; i < 60; i++) {
        const mid = (lo + hi) / 2;
        if (work(mid) > 1) lo = mid;
        else hi = mid;
      }
      latency = hi;
    }
    const shedByClass = { critical: 0, normal: 0, low: 0 };
    let admitted = 0;
    for (const { c, rate } of rates(latency)) {
      shedByClass[c] = rate * p[c];
      admitted += rate * (1 - p[c]);
    }
    const p99 = 1500 * latency;
    const state = controller.tick({ p99Ms: p99, samples: admitted, eventLoopDelayP99Ms: 500 * latency, backlog: 0 }, DT);
    steps.push({ t, admitted, shedByClass, p99, level: state.level, heldOff: state.normalHeldOffSeconds });
  }
  return steps;
}

const between = <T extends { t: number }>(steps: T[], from: number, to: number) => steps.filter((s) => s.t >= from && s.t < to);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('shedding controller (deterministic simulation)', () => {
  it('admits everything while the load fits', () => {
    const steps = simulate(createShedController(), () => 0.7 * CAPACITY, 30);
    assert.ok(steps.every((s) => s.level === 0 && s.admitted === s.offered));
  });

  it('converges under a step to 2× capacity: goodput near capacity, latency near target, critical untouched', () => {
    const steps = simulate(createShedController(), (t) => (t < 5 ? 0.7 : 2) * CAPACITY, 60);
    const settled = between(steps, 20, 60);
    const goodput = mean(settled.map((s) => s.admitted));
    assert.ok(goodput >= 0.85 * CAPACITY && goodput <= 1.05 * CAPACITY, `goodput ${goodput}`);
    assert.ok(mean(settled.map((s) => s.p99)) <= 2 * DEFAULT_CONTROLLER_PARAMS.targetP99Ms, 'p99 held near the target');
    assert.ok(
      settled.every((s) => s.shedByClass.critical === 0),
      'critical never shed',
    );
    const shedLow = settled.reduce((a, s) => a + s.shedByClass.low, 0);
    const shedNormal = settled.reduce((a, s) => a + s.shedByClass.normal, 0);
    assert.ok(shedLow > 0.95 * (shedLow + shedNormal), 'at 2× the lowest class absorbs the shedding');
  });

  it('does not oscillate in steady overload', () => {
    const steps = simulate(createShedController(), () => 2 * CAPACITY, 90);
    const levels = between(steps, 30, 90).map((s) => s.level);
    const m = mean(levels);
    const sd = Math.sqrt(mean(levels.map((l) => (l - m) ** 2)));
    assert.ok(sd < 0.05, `level std-dev ${sd}`);
    // No on/off flapping: the low class is never fully re-admitted once the controller has settled.
    assert.ok(
      levels.every((l) => l > 0.2),
      'no return to zero while overloaded',
    );
  });

  it('sheds low before normal on a ramp, and normal only once low is fully shed', () => {
    const steps = simulate(createShedController(), (t) => CAPACITY * (0.5 + t / 20), 80);
    for (const s of steps) {
      if (s.shedByClass.normal > 0)
        assert.equal(s.shedByClass.low, s.offered * MIX.low, `t=${s.t}: normal shed while low was not all shed`);
      assert.equal(s.shedByClass.critical, 0);
    }
    assert.ok(
      steps.some((s) => s.shedByClass.normal > 0),
      'at 4.5× even normal is shed',
    );
  });

  it('rides out a 4× spike and recovers within 5 s after it ends', () => {
    const spikeEnd = 25;
    const steps = simulate(createShedController(), (t) => (t >= 20 && t < spikeEnd ? 4 : 0.6) * CAPACITY, 45);
    const spike = between(steps, 20, spikeEnd);
    assert.ok(spike.every((s) => s.shedByClass.critical === 0));
    const recovered = between(steps, spikeEnd + 5, 45);
    assert.ok(
      recovered.every((s) => s.level === 0),
      'all traffic admitted again 5 s after the spike',
    );
  });

  it('sheds non-critical traffic as the stream backlog passes its watermarks, whatever the latency', () => {
    const { backlogLowWatermark: low, backlogHighWatermark: high } = DEFAULT_CONTROLLER_PARAMS;
    const controller = createShedController();
    simulate(
      controller,
      () => 0.5 * CAPACITY,
      5,
      () => low + (high - low) / 4,
    );
    assert.ok(Math.abs(controller.probability('low') - 0.5) < 1e-9, 'halfway to the low class being shed');
    assert.equal(controller.probability('normal'), 0);
    simulate(
      controller,
      () => 0.5 * CAPACITY,
      5,
      () => high,
    );
    assert.equal(controller.probability('low'), 1);
    assert.equal(controller.probability('normal'), 1);
    assert.equal(controller.probability('critical'), 0);
    simulate(
      controller,
      () => 0.5 * CAPACITY,
      1,
      () => 0,
    );
    assert.equal(controller.probability('low'), 0, 'the floor lifts as soon as the backlog drains');
  });

  it('holds normal traffic off when shedding it does not relieve the pressure (refusals cost CPU, clients come straight back)', () => {
    // Quota 4/s per connection: 2000 requests/s offered, where the core fits about 1250 admitted ones.
    const guarded = closedLoop(createShedController(), 4, 60);
    const unguarded = closedLoop(createShedController({ ...DEFAULT_CONTROLLER_PARAMS, normalMinRelief: -Infinity }), 4, 60);
    assert.ok(
      guarded.some((s) => s.heldOff > 0),
      'a probe found shedding normal futile',
    );
    assert.ok(
      unguarded.every((s) => s.heldOff === 0),
      'without the relief test nothing is held off',
    );
    const probes = guarded.filter((s, i) => s.heldOff > 0 && (guarded[i - 1]?.heldOff ?? 0) === 0).length;
    assert.ok(probes <= 2, `futile probes back off (${probes} in 60 s)`);
    const settled = (steps: ClosedLoopStep[]) => between(steps, 10, 60);
    const goodput = (steps: ClosedLoopStep[]) => mean(settled(steps).map((s) => s.admitted));
    assert.ok(goodput(guarded) > 1.5 * goodput(unguarded), `goodput ${goodput(guarded)} vs ${goodput(unguarded)} without the hold-off`);
    const lowShare = (steps: ClosedLoopStep[]) => {
      const low = settled(steps).reduce((a, s) => a + s.shedByClass.low, 0);
      return low / settled(steps).reduce((a, s) => a + s.shedByClass.low + s.shedByClass.normal, 0);
    };
    assert.ok(lowShare(guarded) > 0.9, `shed from low ${lowShare(guarded)}`);
    assert.ok(
      guarded.every((s) => s.shedByClass.critical === 0),
      'critical never shed',
    );
    const worst = (steps: ClosedLoopStep[]) => Math.max(...settled(steps).map((s) => s.p99));
    assert.ok(worst(guarded) <= 1.5 * worst(unguarded), 'and latency no worse to speak of: shedding normal was not buying any');
  });

  it('keeps shedding normal traffic where that relieves the pressure', () => {
    const controller = createShedController();
    const steps = simulate(controller, (t) => (t < 5 ? 0.7 : 4) * CAPACITY, 60);
    assert.ok(
      between(steps, 20, 60).every((s) => s.shedByClass.normal > 0),
      'normal is shed at 4×',
    );
    // The queue built in the first second drains only slowly, and each probe still sees the pressure falling.
    assert.ok(
      steps.every((s) => s.heldOff === 0),
      'never held off',
    );
    assert.ok(mean(between(steps, 20, 60).map((s) => s.admitted)) >= 0.85 * CAPACITY);
  });

  it('takes its targets, watermarks and hard limits from the configuration defaults, not defaults of its own', () => {
    const variables: Record<string, string> = {
      targetP99Ms: 'SHED_TARGET_P99_MS',
      targetEventLoopDelayMs: 'SHED_TARGET_EVENT_LOOP_DELAY_MS',
      backlogLowWatermark: 'SHED_BACKLOG_LOW_ENTRIES',
      backlogHighWatermark: 'SHED_BACKLOG_HIGH_ENTRIES',
      hardMaxInFlight: 'SHED_HARD_MAX_IN_FLIGHT',
      hardEventLoopDelayMs: 'SHED_HARD_EVENT_LOOP_DELAY_MS',
    };
    for (const [param, name] of Object.entries(variables)) {
      const variable = Object.values(CONFIG_VARIABLES).find((v) => v.name === name);
      assert.equal(
        DEFAULT_CONTROLLER_PARAMS[param as keyof ControllerParams],
        Number(variable?.defaultValue),
        `${param} is ${name}'s default`,
      );
    }
    assert.equal(
      DEFAULT_CONTROLLER_PARAMS.busyLoopUtilization * 100,
      Number(Object.values(CONFIG_VARIABLES).find((v) => v.name === 'SHED_BUSY_LOOP_PERCENT')?.defaultValue),
      "busyLoopUtilization is SHED_BUSY_LOOP_PERCENT's default",
    );
  });

  it('counts latency over target only while the event loop is busy: slow answers of an idle process shed nothing', () => {
    const busy = DEFAULT_CONTROLLER_PARAMS.busyLoopUtilization;
    const slow = (loopUtilization: number | undefined) => ({
      p99Ms: 400,
      samples: 1000,
      classes: { critical: { p99Ms: 400, samples: 200 }, normal: { p99Ms: 400, samples: 300 }, low: { p99Ms: 400, samples: 500 } },
      eventLoopDelayP99Ms: 5,
      backlog: 0,
      ...(loopUtilization === undefined ? {} : { loopUtilization }),
    });
    // Every class 8–16× over its target, the loop busy a third of the time: waits, not this process's work.
    const idle = createShedController();
    let state = idle.tick(slow(busy / 3), 0.25);
    for (let i = 0; i < 40; i++) state = idle.tick(slow(busy / 3), 0.25);
    assert.equal(state.level, 0, 'nothing shed');
    assert.equal(state.latencyCounted, false);
    assert.ok(state.classPressure.critical > 1, 'each class pressure is still shown');
    // The same latencies with the loop busy: the process is the bottleneck, and it sheds low, then normal.
    const loaded = createShedController();
    for (let i = 0; i < 40; i++) state = loaded.tick(slow(Math.min(1, busy + 0.2)), 0.25);
    assert.equal(state.latencyCounted, true);
    assert.equal(loaded.probability('low'), 1);
    // Once the loop is no longer busy, the level is released although latency stays over target.
    for (let i = 0; i < 40; i++) state = loaded.tick(slow(busy / 3), 0.25);
    assert.equal(state.level, 0, 'released');
    // Unmeasured utilisation (a caller without it) counts latency as before, and SHED_BUSY_LOOP_PERCENT=0 always does.
    const unmeasured = createShedController();
    for (let i = 0; i < 40; i++) unmeasured.tick(slow(undefined), 0.25);
    assert.equal(unmeasured.probability('low'), 1);
    const always = createShedController({ ...DEFAULT_CONTROLLER_PARAMS, busyLoopUtilization: 0 });
    for (let i = 0; i < 40; i++) always.tick(slow(0), 0.25);
    assert.equal(always.probability('low'), 1);
  });

  it('holds critical traffic to its own, tighter target: sheds low, then normal, while the other classes are within theirs', () => {
    const controller = createShedController();
    const classes = (critical: number) => ({
      critical: { p99Ms: critical, samples: 200 },
      normal: { p99Ms: 30, samples: 300 },
      low: { p99Ms: 30, samples: 500 },
    });
    // The all-class p99 (40 ms) is within the general 50 ms target; critical's 40 ms is over its 25 ms.
    const state = controller.tick({ p99Ms: 40, samples: 1000, classes: classes(40), eventLoopDelayP99Ms: 5, backlog: 0 }, 1);
    assert.ok(state.classPressure.critical > 1.5, `critical over its target: ${JSON.stringify(state.classPressure)}`);
    assert.ok(state.classPressure.normal < 1 && state.classPressure.low < 1);
    for (let i = 0; i < 20; i++)
      controller.tick({ p99Ms: 40, samples: 1000, classes: classes(40), eventLoopDelayP99Ms: 5, backlog: 0 }, 0.25);
    assert.ok(controller.probability('low') > 0, 'low is shed for critical');
    assert.ok(controller.probability('low') >= controller.probability('normal'), 'low before normal');
    assert.equal(controller.probability('critical'), 0, 'critical itself is never shed by the law');
    // Within its target again: the shedding is released.
    for (let i = 0; i < 40; i++)
      controller.tick({ p99Ms: 20, samples: 1000, classes: classes(10), eventLoopDelayP99Ms: 5, backlog: 0 }, 0.25);
    assert.equal(controller.probability('low'), 0);

    // The same latencies under one target for every class (the critical target at the general one): nothing shed.
    const one = createShedController({ ...DEFAULT_CONTROLLER_PARAMS, classTargetP99Ms: { critical: 50, normal: 50, low: 50 } });
    for (let i = 0; i < 20; i++) one.tick({ p99Ms: 40, samples: 1000, classes: classes(40), eventLoopDelayP99Ms: 5, backlog: 0 }, 0.25);
    assert.equal(one.probability('low'), 0);
  });

  it('judges a class only on enough samples of its own, else the all-class window', () => {
    const controller = createShedController();
    const few = { p99Ms: 500, samples: 5 };
    const state = controller.tick(
      { p99Ms: 20, samples: 15, classes: { critical: few, normal: few, low: few }, eventLoopDelayP99Ms: 0, backlog: 0 },
      1,
    );
    assert.deepEqual(state.classPressure, { critical: 0, normal: 0, low: 0 });
    assert.equal(state.pressure, 0, 'fifteen samples in all: not trusted either');
    const trusted = controller.tick(
      { p99Ms: 100, samples: 30, classes: { critical: few, normal: few, low: few }, eventLoopDelayP99Ms: 5, backlog: 0 },
      1,
    );
    assert.equal(trusted.pressure, 2, 'the all-class window against the general target');
  });

  it('refuses critical only past the hard limits', () => {
    const controller = createShedController();
    assert.equal(controller.overHardLimit(100, 20), false);
    assert.equal(controller.overHardLimit(DEFAULT_CONTROLLER_PARAMS.hardMaxInFlight, 20), true);
    assert.equal(controller.overHardLimit(10, DEFAULT_CONTROLLER_PARAMS.hardEventLoopDelayMs), true);
  });
});
