import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { BREAKER_CODE, createBreaker, isBreakerRejection, type Breaker, type BreakerOptions } from '../lib/breaker.js';
import { createLogger } from '../lib/logger.js';
import { eventually } from './support.js';

const never = () => new Promise<never>(() => {});
const failing = () => Promise.reject(Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' }));

describe('breaker factory', () => {
  const made: Breaker[] = [];
  after(() => made.forEach((b) => b.shutdown()));

  function breaker(options: Partial<BreakerOptions> = {}): { breaker: Breaker; registry: Registry } {
    const registry = new Registry();
    const b = createBreaker({
      name: 'test_dep',
      registry,
      logger: createLogger('silent', 'test'),
      timeoutMs: 0,
      resetTimeoutMs: 60_000,
      volumeThreshold: 2,
      errorThresholdPercent: 50,
      ...options,
    });
    made.push(b);
    return { breaker: b, registry };
  }

  async function metric(registry: Registry, text: string): Promise<boolean> {
    return (await registry.metrics()).split('\n').includes(text);
  }

  it('exports its state and every transition at zero from the start', async () => {
    const { registry } = breaker();
    assert.ok(await metric(registry, 'floodgate_breaker_state{breaker="test_dep"} 0'));
    for (const to of ['closed', 'half_open', 'open'])
      assert.ok(await metric(registry, `floodgate_breaker_transitions_total{breaker="test_dep",to="${to}"} 0`), to);
  });

  it('opens after failures and then fails fast without calling', async () => {
    const { breaker: b, registry } = breaker();
    await assert.rejects(b.fire(failing), /connection refused/);
    assert.equal(b.state(), 'closed', 'one failure is below the volume threshold');
    await assert.rejects(b.fire(failing), /connection refused/);
    assert.equal(b.state(), 'open');
    let called = false;
    const err = await b.fire(async () => (called = true)).catch((e: unknown) => e);
    assert.equal((err as { code: string }).code, BREAKER_CODE.open);
    assert.ok(isBreakerRejection(err));
    assert.equal(called, false);
    assert.ok(await metric(registry, 'floodgate_breaker_state{breaker="test_dep"} 2'));
    assert.ok(await metric(registry, 'floodgate_breaker_transitions_total{breaker="test_dep",to="open"} 1'));
  });

  it('does not open on semaphore (capacity) rejections', async () => {
    const { breaker: b } = breaker({ capacity: 1, volumeThreshold: 1 });
    let release!: () => void;
    const running = b.fire(() => new Promise<void>((r) => (release = r)));
    for (let i = 0; i < 5; i++) {
      const err = await b.fire(async () => 'never runs').catch((e: unknown) => e);
      assert.equal((err as { code: string }).code, BREAKER_CODE.semaphoreLocked);
    }
    assert.equal(b.state(), 'closed');
    release();
    await running;
    assert.equal(await b.fire(async () => 'ok'), 'ok');
  });

  it("does not open on errors that are the caller's fault", async () => {
    const { breaker: b } = breaker({ volumeThreshold: 1, isCallerError: (err) => (err as Error).message === 'bad row' });
    for (let i = 0; i < 5; i++)
      await assert.rejects(
        b.fire(() => Promise.reject(new Error('bad row'))),
        /bad row/,
      );
    assert.equal(b.state(), 'closed');
  });

  it('aborts a call that outlives its timeout and frees the caller', async () => {
    const { breaker: b } = breaker({ timeoutMs: 50, volumeThreshold: 1 });
    let signal: AbortSignal | undefined;
    const err = await b
      .fire((s) => {
        signal = s;
        return never();
      })
      .catch((e: unknown) => e);
    assert.equal((err as { code: string }).code, BREAKER_CODE.timeout);
    assert.equal(signal?.aborted, true, 'the call was told to stop');
    assert.equal(b.state(), 'open', 'a timeout is a failure');
    // Other calls get their own signal: one timeout does not abort them.
    const { breaker: other } = breaker({ timeoutMs: 60_000 });
    const fresh = await other.fire(async (s) => s.aborted);
    assert.equal(fresh, false);
  });

  it('lets one trial through when half-open and closes when it succeeds', async () => {
    const { breaker: b, registry } = breaker({ resetTimeoutMs: 100 });
    for (let i = 0; i < 3; i++) await b.fire(failing).catch(() => {});
    assert.equal(b.state(), 'open');
    await eventually(async () => b.state() === 'half_open', 'half-open after the reset timeout');
    let release!: () => void;
    const trial = b.fire(() => new Promise<string>((r) => (release = () => r('trial'))));
    const second = await b.fire(async () => 'second').catch((e: unknown) => e);
    assert.equal((second as { code: string }).code, BREAKER_CODE.open, 'only one trial at a time');
    release();
    assert.equal(await trial, 'trial');
    assert.equal(b.state(), 'closed');
    assert.ok(await metric(registry, 'floodgate_breaker_transitions_total{breaker="test_dep",to="half_open"} 1'));
    assert.ok(await metric(registry, 'floodgate_breaker_transitions_total{breaker="test_dep",to="closed"} 1'));
    assert.ok(await metric(registry, 'floodgate_breaker_state{breaker="test_dep"} 0'));
  });

  it('opens again when the half-open trial fails', async () => {
    const { breaker: b } = breaker({ resetTimeoutMs: 100 });
    for (let i = 0; i < 3; i++) await b.fire(failing).catch(() => {});
    await eventually(async () => b.state() === 'half_open', 'half-open after the reset timeout');
    await b.fire(failing).catch(() => {});
    assert.equal(b.state(), 'open');
  });

  it('can be opened by hand (a class gate) and shares one gauge per registry', async () => {
    const registry = new Registry();
    const common = { registry, logger: createLogger('silent', 'test'), timeoutMs: 0, resetTimeoutMs: 60_000 };
    const low = createBreaker({ name: 'gate_low', ...common });
    const normal = createBreaker({ name: 'gate_normal', ...common });
    made.push(low, normal);
    low.open();
    assert.equal(low.state(), 'open');
    assert.equal(normal.state(), 'closed');
    assert.ok(await metric(registry, 'floodgate_breaker_state{breaker="gate_low"} 2'));
    assert.ok(await metric(registry, 'floodgate_breaker_state{breaker="gate_normal"} 0'));
  });
});
