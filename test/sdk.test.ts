import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createClient, type FloodgateError, type RequestReport } from '../client/src/index.js';
import { startSdkFloodgate, type SdkFloodgate } from './sdk-floodgate.js';

describe('client SDK against a real Floodgate', () => {
  let fg: SdkFloodgate;
  before(async () => {
    fg = await startSdkFloodgate();
  });
  after(async () => {
    await fg?.close();
  });

  it('batches per class, one request per batch with X-Priority, and stores each event once with its class', async () => {
    const key = await fg.key('sdk-classes');
    const requests: RequestReport[] = [];
    const client = createClient({ url: fg.api.url, key, flushAt: 50, onRequest: (r) => requests.push(r) });
    const keys = new Map<string, string>();
    for (let i = 0; i < 300; i++) {
      const priority = (['critical', 'normal', 'low'] as const)[i % 3]!;
      keys.set(client.track({ type: 'sdk.classes', data: { i } }, { priority }), priority);
    }
    await client.flush();
    assert.equal(client.stats().delivered, 300);
    // 100 events per class in batches of 50: two requests per class, each of one class.
    assert.equal(requests.length, 6);
    assert.ok(requests.every((r) => r.outcome === 'accepted' && r.events === 50 && r.attempt === 0));
    const stored = await fg.stored('sdk-classes', 300);
    assert.equal(stored.size, 300);
    for (const [k, row] of stored) {
      assert.equal(row.count, 1);
      assert.equal(row.priority, keys.get(k), 'stored in the class it was tracked with');
    }
    await client.close();
  });

  it('gzips bodies above gzipAboveBytes and Floodgate reads them', async () => {
    const key = await fg.key('sdk-gzip');
    const requests: RequestReport[] = [];
    const client = createClient({ url: fg.api.url, key, gzipAboveBytes: 2048, flushAt: 100, onRequest: (r) => requests.push(r) });
    for (let i = 0; i < 100; i++) client.track({ type: 'sdk.gzip', data: { text: 'lorem ipsum '.repeat(20), i } });
    client.track({ type: 'sdk.small' }, { priority: 'low' });
    await client.flush();
    const big = requests.find((r) => r.priority === 'normal')!;
    const small = requests.find((r) => r.priority === 'low')!;
    assert.equal(big.gzip, true);
    assert.ok(big.bytes < 100 * 240, `compressed on the wire (${big.bytes} bytes)`);
    assert.equal(small.gzip, false);
    assert.equal((await fg.stored('sdk-gzip', 101)).size, 101);
    await client.close();
  });

  it('reports events the server rejects, delivers the rest, and does not retry them', async () => {
    const key = await fg.key('sdk-rejected');
    const errors: FloodgateError[] = [];
    const requests: RequestReport[] = [];
    const client = createClient({ url: fg.api.url, key, onError: (e) => errors.push(e), onRequest: (r) => requests.push(r) });
    client.track({ type: 'fine', data: { n: 1 } });
    const badKey = client.track({ type: 'has a space' });
    client.track({ type: 'fine', value: 2 });
    await client.flush();
    assert.equal(requests.length, 1, 'one request, not retried');
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.code, 'event_rejected');
    assert.equal(errors[0]!.events.length, 1);
    assert.equal(errors[0]!.events[0]!.key, badKey);
    assert.equal(errors[0]!.events[0]!.errors?.[0]?.path, '/type');
    assert.deepEqual({ delivered: client.stats().delivered, rejected: client.stats().rejected }, { delivered: 2, rejected: 1 });
    assert.equal((await fg.stored('sdk-rejected', 2)).size, 2);

    // Every event of the batch invalid: Floodgate answers 422, the events are reported, nothing is retried.
    client.track({ type: 'bad type' }, { priority: 'low' });
    client.track({ type: 'fine', timestamp: 'yesterday' }, { priority: 'low' });
    await client.flush();
    assert.equal(requests.length, 2);
    assert.equal(requests[1]!.status, 422);
    assert.equal(errors.length, 2);
    assert.equal(errors[1]!.code, 'event_rejected');
    assert.equal(errors[1]!.reason, 'invalid_event');
    assert.deepEqual(
      errors[1]!.events.map((e) => e.errors?.[0]?.path),
      ['/type', '/timestamp'],
    );
    assert.throws(() => client.track({ type: '' }), TypeError, 'an event without a type is a programming error');
    await client.close();
  });

  it('surfaces a refused request (401) without retrying it', async () => {
    const errors: FloodgateError[] = [];
    const requests: RequestReport[] = [];
    const client = createClient({
      url: fg.api.url,
      key: 'fgk_not_a_key',
      onError: (e) => errors.push(e),
      onRequest: (r) => requests.push(r),
    });
    client.track({ type: 'nope' });
    client.track({ type: 'nope' });
    await client.flush();
    assert.equal(requests.length, 1);
    assert.equal(errors[0]?.code, 'batch_refused');
    assert.equal(errors[0]?.status, 401);
    assert.equal(errors[0]?.reason, 'unauthorized');
    assert.equal(errors[0]?.events.length, 2);
    assert.equal(client.stats().refused, 2);
    await client.close();
  });

  it('close() sends what waits for its batch to fill, and everything arrives', async () => {
    const key = await fg.key('sdk-close');
    const client = createClient({ url: fg.api.url, key, flushAt: 1000, flushIntervalMs: 3_600_000 });
    for (let i = 0; i < 500; i++) client.track({ type: 'sdk.close', data: { i } }, { priority: i % 2 ? 'normal' : 'critical' });
    assert.equal(client.stats().requests, 0, 'nothing sent yet: batches wait to fill');
    const result = await client.close();
    assert.deepEqual(result, { delivered: 500, undelivered: 0 });
    assert.equal((await fg.stored('sdk-close', 500)).size, 500);
    const errors: FloodgateError[] = [];
    const closed = createClient({ url: fg.api.url, key, onError: (e) => errors.push(e) });
    await closed.close();
    closed.track({ type: 'late' });
    assert.equal(errors[0]?.code, 'client_closed', 'tracked after close: reported, not sent');
  });

  it('close() gives up at its deadline when Floodgate is unreachable, reporting what it held', async () => {
    const errors: FloodgateError[] = [];
    // A port nothing listens on: every attempt is refused at once and retried with backoff.
    const client = createClient({ url: 'http://127.0.0.1:9', key: 'k', onError: (e) => errors.push(e), retryBaseMs: 50 });
    for (let i = 0; i < 10; i++) client.track({ type: 'lost' });
    const started = Date.now();
    const result = await client.close({ timeoutMs: 500 });
    assert.ok(Date.now() - started < 5000, 'close() returned at its deadline');
    assert.deepEqual(result, { delivered: 0, undelivered: 10 });
    assert.equal(errors.at(-1)?.code, 'client_closed');
    assert.equal(client.stats().closed, 10);
    assert.equal(client.stats().held.events, 0);
  });
});
