import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createWorkLimit, MIN_LIMIT } from '../app/shedding/work-limit.js';
import { createTestEnv, eventually, json, startTestApi, type TestApi, type TestEnv } from './support.js';

describe('the limit on normal and low requests in flight', () => {
  it('never holds critical back; past the limit serves normal before low, newest first, and refuses a wait past its timeout', async () => {
    let now = 0;
    const limit = createWorkLimit({ maxLimit: MIN_LIMIT, queueTimeoutMs: 1000, maxQueued: 10, now: () => now });
    try {
      for (let i = 0; i < MIN_LIMIT; i++) assert.equal(limit.acquire(i % 2 ? 'low' : 'normal'), true);
      const order: string[] = [];
      const wait = (name: string, slot: boolean | Promise<boolean>) => {
        assert.ok(slot instanceof Promise, `${name} waits`);
        return slot.then((granted) => order.push(`${name}:${granted ? 'granted' : 'refused'}`));
      };
      const oldLow = wait('old low', limit.acquire('low'));
      now = 10;
      const newLow = wait('new low', limit.acquire('low'));
      const normal = wait('normal', limit.acquire('normal'));
      assert.equal(limit.acquire('critical'), true, 'critical never waits');
      assert.deepEqual(limit.state().queued, { normal: 1, low: 2 });

      limit.release('normal');
      limit.release('low');
      await Promise.all([normal, newLow]);
      assert.deepEqual(order, ['normal:granted', 'new low:granted'], 'normal first, then the newest low');
      now = 1500;
      // The sweeper's timer is unref'd (it must not keep a process alive): wait on one that is not.
      await eventually(async () => order.length === 3, 'the timed-out wait to be refused');
      await oldLow;
      assert.deepEqual(order.at(-1), 'old low:refused', 'waited past its timeout');
      assert.deepEqual(limit.state().queued, { normal: 0, low: 0 });
      assert.equal(limit.state().inFlight, MIN_LIMIT);
    } finally {
      limit.close();
    }
  });

  it('shrinks while critical traffic is over its target and the limit is in use, and grows back once critical is within it', () => {
    let now = 0;
    const limit = createWorkLimit({ maxLimit: 64, queueTimeoutMs: 1000, maxQueued: 10, now: () => now });
    try {
      for (let i = 0; i < 40; i++) {
        now += 250;
        limit.update(3);
      }
      assert.equal(limit.state().limit, 64, 'a limit nobody reaches is not what slows critical down: left alone');
      for (let i = 0; i < 40; i++) {
        // Every slot taken: the limit is in use.
        const slots = limit.state().limit;
        for (let j = 0; j < slots; j++) assert.equal(limit.acquire('low'), true);
        now += 250;
        limit.update(3);
        for (let j = 0; j < slots; j++) limit.release('low');
      }
      assert.equal(limit.state().limit, MIN_LIMIT, 'down to the floor');
      now += 250;
      limit.update(0.5);
      assert.equal(limit.state().limit, MIN_LIMIT, 'not grown while unused');
      for (let i = 0; i < 200; i++) {
        // Every slot taken: the limit is what holds the traffic back.
        const slots = limit.state().limit;
        for (let j = 0; j < slots; j++) assert.equal(limit.acquire('low'), true);
        now += 250;
        limit.update(0.5);
        for (let j = 0; j < slots; j++) limit.release('low');
      }
      assert.equal(limit.state().limit, 64, 'back to its ceiling');
    } finally {
      limit.close();
    }
  });

  it('is off at 0: everything goes through at once', () => {
    const limit = createWorkLimit({ maxLimit: 0, queueTimeoutMs: 1000, maxQueued: 10 });
    for (let i = 0; i < 100; i++) assert.equal(limit.acquire('low'), true);
    assert.equal(limit.state().enabled, false);
    limit.close();
  });
});

describe('per-class targets on a real listening server', () => {
  let env: TestEnv;
  let api: TestApi;
  before(async () => {
    // Targets no busy test machine reaches (latency and event-loop delay), so that nothing is shed while the
    // windows fill.
    env = await createTestEnv({
      SHED_MODE: 'enforce',
      SHED_TARGET_P99_MS: '8000',
      SHED_TARGET_P99_CRITICAL_MS: '2000',
      SHED_TARGET_EVENT_LOOP_DELAY_MS: '60000',
      SHED_HARD_EVENT_LOOP_DELAY_MS: '60000',
    });
    api = await startTestApi(env);
  });
  after(async () => {
    await api?.close();
    await env?.cleanup();
  });

  it('shows each class target, window and the in-flight limit in GET /v1/admin/load and in the metrics', async () => {
    for (let i = 0; i < 30; i++) {
      for (const priority of ['critical', 'normal', 'low'] as const) {
        const res = await api.post({ type: 'probe', data: { i } }, { 'x-priority': priority });
        const body = await res.text();
        assert.equal(res.status, 202, body);
      }
    }
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    let load: any;
    await eventually(async () => {
      const res = await fetch(`${api.url}/v1/admin/load`, { headers: { authorization: `Bearer ${api.adminKey}` } });
      load = await json(res);
      return load.signals.classes.critical.samples >= 20;
    }, 'the shedder to tick over the requests');
    assert.deepEqual(load.targets.classP99Ms, { critical: 2000, normal: 8000, low: 8000 });
    assert.equal(load.targets.noncriticalMaxInFlight, 64);
    for (const priority of ['critical', 'normal', 'low']) {
      assert.ok(load.signals.classes[priority].samples >= 20, `${priority} has its own window`);
      assert.equal(typeof load.signals.classes[priority].p99Ms, 'number');
      assert.equal(typeof load.controller.classPressure[priority], 'number');
    }
    assert.equal(load.workLimit.enabled, true);
    assert.ok(load.workLimit.limit >= 4 && load.workLimit.limit <= 64);
    assert.deepEqual(load.workLimit.queued, { normal: 0, low: 0 });
    assert.equal(load.workLimit.inFlight, 0, 'every slot given back');

    const metrics = await api.metrics();
    assert.match(metrics, /floodgate_shed_class_target_p99_seconds\{priority="critical"[^}]*\} 2$/m);
    assert.match(metrics, /floodgate_shed_class_target_p99_seconds\{priority="low"[^}]*\} 8$/m);
    assert.match(metrics, /floodgate_shed_class_window_p99_seconds\{priority="normal"[^}]*\} \d/);
    assert.match(metrics, /floodgate_shed_class_pressure\{priority="critical"[^}]*\} \d/);
    assert.match(metrics, /floodgate_shed_noncritical_limit(\{[^}]*\})? \d+/);
    assert.match(metrics, /^floodgate_shed_loop_utilization(\{[^}]*\})? (0|1|0\.\d+(e-\d+)?|\d\.\d+e-\d+)$/m);
    assert.match(metrics, /floodgate_shed_queued_requests\{priority="low"[^}]*\} 0/);
    assert.match(metrics, /floodgate_shed_requests_total\{priority="low",reason="queue"[^}]*\} 0/);
  });
});

describe('held refusals on a real listening server', () => {
  let env: TestEnv;
  let api: TestApi;
  before(async () => {
    // No worker and a backlog past the high watermark: every normal and low request is shed, critical is not.
    env = await createTestEnv({
      SHED_MODE: 'enforce',
      SHED_BACKLOG_LOW_ENTRIES: '1',
      SHED_BACKLOG_HIGH_ENTRIES: '2',
      SHED_REFUSAL_DELAY_MS: '300',
      GATE_OPEN_AFTER_MS: '600000',
    });
    for (let i = 0; i < 5; i++) await env.redis.xadd(env.config.streamKey, '*', 'e', 'x');
    api = await startTestApi(env);
  });
  after(async () => {
    await api?.close();
    await env?.cleanup();
  });

  it('answers a refused low request only after SHED_REFUSAL_DELAY_MS, in the early path and through Koa, and critical at once', async () => {
    await eventually(async () => {
      const load = await json(await fetch(`${api.url}/v1/admin/load`, { headers: { authorization: `Bearer ${api.adminKey}` } }));
      return load.controller.shedProbability.low === 1 && load.targets.refusalDelayMs === 300;
    }, 'the backlog to shed every low request');
    // A tenant's first requests are admitted until its demand is measured (fair shedding): send until one is shed.
    await eventually(async () => {
      const res = await api.post({ type: 'warm-up' }, { 'x-priority': 'low' });
      await res.arrayBuffer();
      return res.status === 503;
    }, 'a low request to be shed');
    // With X-Priority (decided before Koa, once the key is cached) and without it (the key's default, decided in Koa).
    const cases: Record<string, string>[] = [{ 'x-priority': 'low' }, { 'x-priority': 'low' }, { 'x-priority': 'normal' }, {}];
    for (const headers of cases) {
      const started = performance.now();
      const res = await api.post({ type: 'held' }, headers);
      const elapsed = performance.now() - started;
      assert.equal(res.status, 503);
      assert.equal((await json(res)).error, 'overloaded');
      assert.ok(elapsed >= 290, `held for the delay: ${elapsed.toFixed(0)} ms`);
    }
    const critical = await api.post({ type: 'held' }, { 'x-priority': 'critical' });
    assert.equal(critical.status, 202, 'critical is admitted');
  });
});
