import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createClient } from '../client/src/index.js';
import { CLOCK_SKEW_THRESHOLD_MS, clockCorrectionMs } from '../lib/event-schema.js';
import { json } from './support.js';
import { startSdkFloodgate, type SdkFloodgate } from './sdk-floodgate.js';

const HOUR = 3_600_000;

describe("client clock skew: a batch's sent_at corrects its timestamps", () => {
  let fg: SdkFloodgate;
  before(async () => {
    fg = await startSdkFloodgate();
  });
  after(async () => {
    await fg?.close();
  });

  const post = (key: string, body: unknown) =>
    fetch(`${fg.api.url}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify(body),
    });

  it('corrects only beyond the threshold', () => {
    assert.equal(clockCorrectionMs(1_000_000, 1_000_000 + CLOCK_SKEW_THRESHOLD_MS), 0);
    assert.equal(clockCorrectionMs(1_000_000, 1_000_000 - CLOCK_SKEW_THRESHOLD_MS), 0);
    assert.equal(clockCorrectionMs(1_000_000, 1_000_000 + CLOCK_SKEW_THRESHOLD_MS + 1), CLOCK_SKEW_THRESHOLD_MS + 1);
    assert.equal(clockCorrectionMs(1_000_000, 1_000_000 - 2 * HOUR), -2 * HOUR);
  });

  it('moves every timestamp of a batch by received_at − sent_at when the client clock is hours off', async () => {
    const key = await fg.key('skew-behind');
    // The client's clock is 2 h behind: it stamped its events and sent_at by that clock.
    const clientNow = Date.now() - 2 * HOUR;
    const stamps = [clientNow - 60_000, clientNow - 1000];
    const res = await post(key, {
      sent_at: new Date(clientNow).toISOString(),
      events: stamps.map((t, i) => ({ type: 'skew', timestamp: new Date(t).toISOString(), idempotency_key: `b${i}` })),
    });
    assert.equal(res.status, 202);
    const rows = await fg.stored('skew-behind', 2);
    for (const [i, t] of stamps.entries()) {
      const row = rows.get(`b${i}`)!;
      // The correction is exactly received_at − sent_at, and received_at is stored.
      assert.equal(row.occurredAt.getTime(), t + (row.receivedAt.getTime() - clientNow));
      assert.ok(Math.abs(row.occurredAt.getTime() - (t + 2 * HOUR)) < 10_000, 'back on the server clock');
    }
  });

  it('keeps timestamps when the skew is within the threshold, and events without one get received_at', async () => {
    const key = await fg.key('skew-small');
    const stamp = Date.now() - 60_000;
    const res = await post(key, {
      sent_at: new Date(Date.now() - 5000).toISOString(),
      events: [
        { type: 'skew', timestamp: new Date(stamp).toISOString(), idempotency_key: 'kept' },
        { type: 'skew', idempotency_key: 'none' },
      ],
    });
    assert.equal(res.status, 202);
    const rows = await fg.stored('skew-small', 2);
    assert.equal(rows.get('kept')!.occurredAt.getTime(), stamp);
    assert.equal(rows.get('none')!.occurredAt.getTime(), rows.get('none')!.receivedAt.getTime());
  });

  it('corrects before the time bounds: a client clock two days ahead is not "in the future"', async () => {
    const key = await fg.key('skew-ahead');
    const clientNow = Date.now() + 48 * HOUR;
    const res = await post(key, {
      sent_at: new Date(clientNow).toISOString(),
      events: [{ type: 'skew', timestamp: new Date(clientNow).toISOString(), idempotency_key: 'ahead' }],
    });
    assert.equal(res.status, 202, 'accepted once corrected');
    const row = (await fg.stored('skew-ahead', 1)).get('ahead')!;
    assert.ok(Math.abs(row.occurredAt.getTime() - row.receivedAt.getTime()) < 1000);
    // Without sent_at the same event is 48 h ahead: refused.
    const plain = await post(key, { events: [{ type: 'skew', timestamp: new Date(clientNow).toISOString() }] });
    assert.equal(plain.status, 422);
  });

  it('refuses a sent_at that is not an RFC 3339 time, and any other top-level field', async () => {
    const key = await fg.key('skew-invalid');
    for (const sent_at of ['yesterday', 1_700_000_000_000, null]) {
      const res = await post(key, { sent_at, events: [{ type: 'x' }] });
      assert.equal(res.status, 400);
      assert.equal((await json(res)).error, 'invalid_body');
    }
    const extra = await post(key, { sent_at: new Date().toISOString(), events: [{ type: 'x' }], other: 1 });
    assert.equal(extra.status, 400);
  });

  it('the SDK sends sent_at by its own clock, so a skewed client still stores the true time', async () => {
    const key = await fg.key('skew-sdk');
    const client = createClient({ url: fg.api.url, key, now: () => Date.now() - 3 * HOUR });
    const before = Date.now();
    const k = client.track({ type: 'skew.sdk' });
    await client.close();
    const row = (await fg.stored('skew-sdk', 1)).get(k)!;
    assert.ok(
      row.occurredAt.getTime() >= before - 1000 && row.occurredAt.getTime() <= Date.now() + 1000,
      `stored ${row.occurredAt.toISOString()}`,
    );
  });
});
