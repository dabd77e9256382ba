import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { clientCapacityOf, clientRampPlan, clientStepOk, isRampStep, RAMP_SETTLE } from '../loadtest/client-figures.js';
import type { ClientPhase, ClientPhaseResult } from '../loadtest/client-model.js';

const SLO = 2000;

/** A phase result as a server of `capacity` events/s would leave it: above capacity the clients' backlog grows. */
function served(phase: ClientPhase, capacity: number, noisy: (rate: number) => boolean): ClientPhaseResult {
  const rate = phase.eventsPerSec;
  const over = rate > capacity || noisy(rate);
  const fate = {
    tracked: rate * phase.seconds,
    delivered: 0,
    within10s: 0,
    dropped: 0,
    failed: 0,
    latency: { count: 1, p50: 1, p90: 1, p99: 1, p999: 1, max: 1 },
  };
  return {
    label: phase.label,
    seconds: phase.seconds,
    offeredPerSec: rate,
    trackedPerSec: rate,
    deliveredPerSec: over ? capacity : rate,
    requests: 1,
    shed: 0,
    rateLimited: 0,
    errors: 0,
    throttled: 0,
    latency: { count: rate === 0 ? 0 : 100, p50: 500, p90: 900, p99: over ? 4000 : 1200, p999: 1500, max: 1600 },
    heldAtStart: 0,
    heldAtEnd: over ? (rate - capacity) * phase.seconds + rate : rate,
    fate: { critical: fate, normal: fate, low: fate },
  };
}

/** Runs the search against a server of `capacity` events/s; returns the phases it asked for and C. */
function search(start: number, capacity: number, noisy: (rate: number) => boolean = () => false) {
  const keptUp = (s: ClientPhaseResult) => clientStepOk(s, SLO);
  const plan = clientRampPlan(start, 5, 300, keptUp);
  const done: ClientPhaseResult[] = [];
  for (let phase = plan(done); phase; phase = plan(done)) done.push(served(phase, capacity, noisy));
  return { done, ...clientCapacityOf(done, keptUp) };
}

describe('the search for the capacity C of the client mix', () => {
  it('climbs, then bisects to within 10 % of what the server sustains', () => {
    const { capacity, done } = search(500, 2300);
    assert.ok(capacity !== null && capacity <= 2300 && capacity >= 2300 / 1.1 / 1.1, `C = ${capacity}`);
    assert.ok(done.filter(isRampStep).length <= 14, 'in a bounded number of steps');
  });

  it('steps down when its first step is already too much, instead of finding nothing', () => {
    const { capacity } = search(1000, 180);
    assert.ok(capacity !== null && capacity <= 180 && capacity >= 180 / 1.1 / 1.1, `C = ${capacity}`);
  });

  it('repeats a step that failed once, after a pause, and does not let one noisy step end the search', () => {
    let noise = 1;
    const { capacity, done } = search(500, 3000, (rate) => rate === 750 && noise-- > 0);
    const labels = done.map((d) => d.label);
    const i = labels.indexOf('ramp 750/s');
    assert.deepEqual(labels.slice(i, i + 3), ['ramp 750/s', RAMP_SETTLE, 'ramp 750/s again']);
    assert.ok(capacity !== null && capacity >= 3000 / 1.1 / 1.1, `C = ${capacity}, not the noisy 750`);
  });

  it('judges a step on what was sustained: a growing backlog of held events fails it even within the latency SLO', () => {
    const step = served({ label: 'ramp 1000/s', seconds: 5, eventsPerSec: 1000 }, 2000, () => false);
    assert.equal(clientStepOk(step, SLO), true);
    assert.equal(clientStepOk({ ...step, heldAtEnd: 4000 }, SLO), false);
    assert.equal(clientStepOk({ ...step, trackedPerSec: 800 }, SLO), false, 'the generator did not keep up');
  });
});
