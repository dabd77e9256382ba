import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createFlights } from '../app/stats-flights.js';

/** A load whose answers the test releases by hand; counts how many reads started. */
function manualLoad() {
  const pending: ((value: number) => void)[] = [];
  let started = 0;
  return {
    load: () =>
      new Promise<number>((resolve) => {
        started++;
        pending.push(resolve);
      }),
    release: (value: number) => pending.shift()!(value),
    get started() {
      return started;
    },
  };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('stats flights', () => {
  it('runs one read per key at a time; requests arriving during it share the next read, which starts after them', async () => {
    const flights = createFlights<number>({ reuseMs: 0 });
    const reads = manualLoad();
    const first = flights.get('k', reads.load);
    const during = Array.from({ length: 20 }, () => flights.get('k', reads.load));
    assert.equal(reads.started, 1, 'the requests arriving during the first read wait for the next');
    reads.release(1);
    assert.equal(await first, 1);
    await tick();
    assert.equal(reads.started, 2, 'one more read for all twenty');
    reads.release(2);
    assert.deepEqual(await Promise.all(during), Array(20).fill(2), 'none got the answer read before it arrived');
    await tick();
    assert.deepEqual(flights.size(), { flights: 0, kept: 0 }, 'nothing is kept without STATS_CACHE_MS');
    const later = flights.get('k', reads.load);
    assert.equal(reads.started, 3, 'a request after the reads ended reads again');
    reads.release(3);
    assert.equal(await later, 3);
  });

  it('keeps keys apart: another tenant or question never shares a read or a kept answer', async () => {
    const flights = createFlights<string>({ reuseMs: 60_000 });
    const a = flights.get('["acme","24h"]', async () => 'acme');
    const b = flights.get('["globex","24h"]', async () => 'globex');
    assert.deepEqual(await Promise.all([a, b]), ['acme', 'globex']);
    assert.equal(await flights.get('["globex","24h"]', async () => 'read again'), 'globex', 'kept per key');
    assert.equal(await flights.get('["globex","1h"]', async () => 'other question'), 'other question');
  });

  it('reuses an answer only within reuseMs of its read starting, and never a failure', async () => {
    let clock = 0;
    const flights = createFlights<number>({ reuseMs: 100, now: () => clock });
    assert.equal(await flights.get('k', async () => 1), 1);
    clock = 100;
    assert.equal(await flights.get('k', async () => 2), 1);
    clock = 101;
    assert.equal(await flights.get('k', async () => 3), 3);
    const failing = flights.get('f', async () => {
      throw new Error('query_timeout');
    });
    const joined = flights.get('f', async () => 5);
    await assert.rejects(failing, /query_timeout/);
    assert.equal(await joined, 5, 'a request that queued behind a failed read gets a read of its own');
    clock = 102;
    await assert.rejects(
      flights.get('g', async () => {
        throw new Error('boom');
      }),
    );
    assert.equal(await flights.get('g', async () => 6), 6, 'a failure is not kept');
  });
});
