import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createClient, parseRetryAfter, retryDelayMs, type FloodgateError, type RequestReport, type Timers } from '../client/src/index.js';
import { createThrottle } from '../client/src/throttle.js';
import { seededRandom } from '../loadtest/events.js';
import { startFaultProxy, type Fault, type FaultProxy } from './sdk-proxy.js';
import { startSdkFloodgate, type SdkFloodgate } from './sdk-floodgate.js';
import { eventually } from './support.js';

const POLICY = { retryBaseMs: 200, retryMaxMs: 5000, maxRetryAfterMs: 60_000 };

/** A virtual clock and timers that fire at once, in order, advancing the clock by each delay; records the delays. */
function virtualTime(start = Date.now()) {
  let t = start;
  const delays: number[] = [];
  const timers: Timers = {
    setTimeout(fn, ms) {
      delays.push(ms);
      const handle = { cancelled: false };
      setImmediate(() => {
        if (handle.cancelled) return;
        t += ms;
        fn();
      });
      return handle;
    },
    clearTimeout(handle) {
      (handle as { cancelled: boolean }).cancelled = true;
    },
  };
  return { now: () => t, timers, delays };
}

describe('client SDK: retry schedule, throttling and the bounded queue', () => {
  let fg: SdkFloodgate;
  let proxy: FaultProxy;
  before(async () => {
    fg = await startSdkFloodgate();
    proxy = await startFaultProxy(fg.api.url);
  });
  after(async () => {
    await proxy?.close();
    await fg?.close();
  });

  it('backoff is exponential with full jitter, capped, and never shorter than Retry-After', () => {
    const half = () => 0.5;
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5, 6].map((n) => retryDelayMs(n, POLICY, half)),
      [100, 200, 400, 800, 1600, 2500, 2500],
    );
    assert.deepEqual(
      [0, 3, 6].map((n) => retryDelayMs(n, POLICY, () => 0)),
      [0, 0, 0],
      'full jitter reaches down to 0',
    );
    assert.equal(
      retryDelayMs(0, POLICY, () => 0, 3000),
      3000,
      'Retry-After is a floor',
    );
    assert.equal(
      retryDelayMs(6, POLICY, () => 0.9999, 1000),
      4999,
      'a longer backoff stands',
    );
    assert.equal(retryDelayMs(0, POLICY, half, 3_600_000), 60_000, 'an absurd Retry-After is capped');
    assert.equal(parseRetryAfter('3', 0), 3000);
    assert.equal(parseRetryAfter('Thu, 01 Jan 1970 00:00:10 GMT', 4000), 6000);
    assert.equal(parseRetryAfter('soon', 0), null);
    assert.equal(parseRetryAfter(null, 0), null);
  });

  it('spreads its batches over the flush interval, one draw per batch, so that clients started together do not send in step', async () => {
    const key = await fg.key('sdk-fill');
    const sendsAfter = async (flushJitter: number | undefined, draws: number[]) => {
      const clock = virtualTime();
      const sequence = [...draws];
      const client = createClient({
        url: fg.api.url,
        key,
        throttle: false,
        ...(flushJitter === undefined ? {} : { flushJitter }),
        now: clock.now,
        timers: clock.timers,
        random: () => sequence.shift() ?? 0,
      });
      const keys: string[] = [];
      // One event at a time: each is the head of its own batch, which leaves when its fill wait is over.
      for (let i = 0; i < draws.length; i++) {
        keys.push(client.track({ type: 'sdk.fill', data: { i } }));
        await client.flush();
      }
      await client.close();
      return { waits: clock.delays, keys };
    };
    // Default flushJitter 0.5 of the default 1000 ms interval: a draw u waits (1 − 0.5 u) × 1000 ms.
    const jittered = await sendsAfter(undefined, [0, 0.5, 1]);
    // flush() sends at once; the wait was already set when the event was tracked.
    assert.deepEqual(jittered.waits, [1000, 750, 500]);
    const exact = await sendsAfter(0, [0.5, 0.9]);
    assert.deepEqual(exact.waits, [1000, 1000], 'flushJitter 0 waits exactly flushIntervalMs');
    const all = [...jittered.keys, ...exact.keys];
    const stored = await fg.stored('sdk-fill', all.length);
    assert.deepEqual([...stored.keys()].sort(), all.sort(), 'every event delivered once');
  });

  it('follows the schedule exactly against Floodgate behind injected failures (virtual clock, fixed random)', async () => {
    const key = await fg.key('sdk-schedule');
    const faults: Fault[] = [{ status: 503, retryAfter: '2' }, { status: 500 }, 'reset', { status: 429, retryAfter: '1', forwarded: true }];
    proxy.setFaults((n) => faults[n] ?? 'forward');
    const clock = virtualTime();
    const reports: RequestReport[] = [];
    const client = createClient({
      url: proxy.url,
      key,
      ...POLICY,
      flushIntervalMs: 0,
      throttle: false,
      random: () => 0.5,
      now: clock.now,
      timers: clock.timers,
      onRequest: (r) => reports.push(r),
    });
    const k = client.track({ type: 'sdk.schedule' }, { priority: 'critical' });
    await client.flush();
    // 503 Retry-After 2 s beats 100 ms; then 200 and 400 ms of plain backoff; 429's 1 s beats 800 ms.
    assert.deepEqual(clock.delays, [2000, 200, 400, 1000]);
    assert.deepEqual(
      reports.map((r) => r.retryInMs),
      [2000, 200, 400, 1000, null],
    );
    assert.deepEqual(
      reports.map((r) => r.status),
      [503, 500, null, 429, 202],
    );
    // sent_at is read from the injected clock at each attempt: the attempts are exactly the delays apart.
    const sent = proxy.seen.map((r) => Date.parse(r.sentAt!));
    assert.deepEqual(
      sent.slice(1).map((t, i) => t - sent[i]!),
      [2000, 200, 400, 1000],
    );
    assert.ok(
      proxy.seen.every((r) => r.keys[0] === k),
      'every attempt carries the same idempotency key',
    );
    assert.equal((await fg.stored('sdk-schedule', 1)).get(k)?.count, 1, 'stored once though the 429 attempt reached Floodgate too');
    await client.close();
  });

  it('gives a batch up after maxRetries and reports it', async () => {
    proxy.setFaults(() => ({ status: 503 }));
    const clock = virtualTime();
    const errors: FloodgateError[] = [];
    const client = createClient({
      url: proxy.url,
      key: 'k',
      maxRetries: 3,
      flushIntervalMs: 0,
      throttle: false,
      now: clock.now,
      timers: clock.timers,
      onError: (e) => errors.push(e),
    });
    client.track({ type: 'doomed' });
    await client.flush();
    assert.equal(client.stats().requests, 4);
    assert.equal(errors[0]?.code, 'retries_exhausted');
    assert.equal(errors[0]?.status, 503);
    await client.close();
  });

  it('adaptive throttle: refuses locally in proportion to rejections, and lets go as accepts return', () => {
    let t = 0;
    const throttle = createThrottle({ k: 2, windowMs: 10_000, now: () => t, random: seededRandom(7) });
    assert.equal(throttle.rejectProbability(), 0);
    for (let i = 0; i < 9; i++) throttle.allow();
    assert.equal(throttle.rejectProbability(), 0.9, '9 requests, no accepts: (9 − 0) / 10');
    let refused = 0;
    for (let i = 0; i < 1000; i++) if (!throttle.allow(true)) refused++;
    assert.ok(refused > 800, `asked again 1000 times: ${refused} refused, and none counted again`);
    assert.equal(throttle.rejectProbability(), 0.9);
    for (let i = 0; i < 3; i++) throttle.accepted();
    assert.equal(throttle.rejectProbability(), 0.3, '(9 − 2·3) / 10');
    for (let i = 0; i < 2; i++) throttle.accepted();
    assert.equal(throttle.rejectProbability(), 0, 'K × accepts ≥ requests: no throttling');
    t += 10_000;
    for (let i = 0; i < 4; i++) throttle.allow();
    assert.equal(throttle.rejectProbability(), 0.8, 'the window forgot the old accepts');
  });

  it('a client that sees rejections sends less: the throttle holds attempts back', async () => {
    proxy.setFaults(() => ({ status: 503, retryAfter: '0' }));
    const spans: Record<string, { requests: number; throttled: number; virtualMs: number }> = {};
    for (const throttle of [false, undefined] as const) {
      const clock = virtualTime(0);
      const client = createClient({
        url: proxy.url,
        key: 'k',
        maxRetries: 20,
        retryBaseMs: 10,
        retryMaxMs: 100,
        flushIntervalMs: 0,
        throttle,
        random: seededRandom(3),
        now: clock.now,
        timers: clock.timers,
      });
      client.track({ type: 'x' });
      await client.flush();
      const s = client.stats();
      spans[throttle === false ? 'off' : 'on'] = { requests: s.requests, throttled: s.throttled, virtualMs: clock.now() };
      await client.close();
    }
    assert.equal(spans.off!.throttled, 0);
    assert.equal(spans.on!.requests, spans.off!.requests, 'the same attempts reach the server…');
    assert.ok(spans.on!.throttled > 10, `…after ${spans.on!.throttled} held back`);
    assert.ok(
      spans.on!.requests / spans.on!.virtualMs < spans.off!.requests / spans.off!.virtualMs,
      `…spread over more time (${JSON.stringify(spans)})`,
    );
  });

  it('a full queue drops the lowest class first (oldest first), counts it, and delivers the rest once', async () => {
    const key = await fg.key('sdk-drops');
    proxy.setFaults(() => ({ status: 503, retryAfter: '1' }));
    const errors: FloodgateError[] = [];
    const refusals: RequestReport[] = [];
    const client = createClient({
      url: proxy.url,
      key,
      maxQueueEvents: 50,
      flushAt: 10,
      flushIntervalMs: 3_600_000,
      throttle: false,
      onError: (e) => errors.push(e),
      onRequest: (r) => refusals.push(r),
    });
    const keys = { low: [] as string[], normal: [] as string[], critical: [] as string[] };
    for (const priority of ['low', 'normal', 'critical'] as const) {
      for (let i = 0; i < 30; i++) {
        keys[priority].push(client.track({ type: 'sdk.drop', data: { priority, i } }, { priority }));
        assert.ok(client.stats().held.events <= 50);
      }
    }
    // Each class's first batch of 10 is in flight (refused, waiting to retry); of the waiting events, the low
    // ones went first, then the oldest normal ones; no critical event was dropped.
    assert.deepEqual(client.stats().dropped, { low: 20, normal: 20, critical: 0 });
    assert.ok(errors.every((e) => e.code === 'queue_full'));
    const dropped = new Set(errors.flatMap((e) => e.events.map((ev) => ev.key)));
    assert.deepEqual([...dropped].sort(), [...keys.low.slice(10), ...keys.normal.slice(10)].sort());
    await eventually(async () => refusals.length === 3, 'the first batch of each class refused');
    assert.ok(refusals.every((r) => r.status === 503 && r.retryInMs! >= 1000));
    proxy.setFaults(() => 'forward');
    await client.flush();
    const expected = [...keys.low.slice(0, 10), ...keys.normal.slice(0, 10), ...keys.critical];
    const stored = await fg.stored('sdk-drops', expected.length);
    assert.deepEqual([...stored.keys()].sort(), expected.sort());
    assert.ok([...stored.values()].every((r) => r.count === 1));
    const s = client.stats();
    assert.equal(s.tracked, s.delivered + s.dropped.low + s.dropped.normal + s.dropped.critical, 'every event accounted for');
    await client.close();
  });

  it('bounds the bytes it holds too; an event larger than a batch is refused at track', async () => {
    proxy.setFaults(() => ({ status: 503, retryAfter: '60' }));
    const errors: FloodgateError[] = [];
    const client = createClient({
      url: proxy.url,
      key: 'k',
      maxQueueBytes: 20 * 1024,
      flushBytes: 8 * 1024,
      flushIntervalMs: 3_600_000,
      throttle: false,
      onError: (e) => errors.push(e),
    });
    const kilobyte = 'x'.repeat(1000);
    for (let i = 0; i < 200; i++) {
      client.track({ type: 'sdk.bytes', data: { kilobyte, i } }, { priority: i < 100 ? 'low' : 'critical' });
      assert.ok(client.stats().held.bytes <= 20 * 1024, `held ${client.stats().held.bytes} bytes`);
    }
    const s = client.stats();
    assert.ok(s.dropped.low >= 90, `low dropped first (${JSON.stringify(s.dropped)})`);
    assert.ok(s.dropped.critical > 0, 'then the oldest critical ones, for newer critical ones');
    client.track({ type: 'sdk.huge', data: { text: 'y'.repeat(9000) } });
    assert.equal(errors.at(-1)?.code, 'event_too_large');
    assert.equal(client.stats().tooLarge, 1);
    const closed = await client.close({ timeoutMs: 100 });
    assert.equal(closed.undelivered, s.held.events);
  });
});
