import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createClient, type FloodgateClient, type RequestReport } from '../client/src/index.js';
import { seededRandom } from '../loadtest/events.js';
import { startFaultProxy, type Fault, type FaultProxy } from './sdk-proxy.js';
import { startSdkFloodgate, type SdkFloodgate } from './sdk-floodgate.js';
import { envVars, eventually, freePort, spawnFloodgate, type FloodgateProcess } from './support.js';

const CLASSES = ['critical', 'normal', 'low'] as const;

describe('client SDK: exactly once across injected failures', () => {
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

  /** Tracks `n` events over the three classes; returns their keys. */
  function trackMany(client: FloodgateClient, n: number, type: string): string[] {
    return Array.from({ length: n }, (_, i) => client.track({ type, data: { i } }, { priority: CLASSES[i % 3] }));
  }

  /** Every key stored exactly once, nothing else stored, and the client counted every event delivered. */
  async function assertExactlyOnce(tenant: string, keys: string[], client: FloodgateClient): Promise<void> {
    const stored = await fg.stored(tenant, keys.length);
    await new Promise((r) => setTimeout(r, 200));
    const again = await fg.stored(tenant, keys.length);
    assert.equal(again.size, stored.size, 'no late arrivals');
    assert.deepEqual([...stored.keys()].sort(), [...keys].sort(), 'every tracked event stored, nothing else');
    assert.ok(
      [...stored.values()].every((r) => r.count === 1),
      'each once',
    );
    const s = client.stats();
    assert.equal(s.delivered, keys.length);
    assert.equal(s.exhausted + s.refused + s.rejected + s.dropped.low + s.dropped.normal + s.dropped.critical, 0);
  }

  it('connection reset after Floodgate accepted the batch: the retry carries the same keys and is stored once', async () => {
    const tenant = 'sdk-reset';
    const key = await fg.key(tenant);
    // The first attempt of every batch is accepted upstream and then cut before the answer reaches the client.
    proxy.setFaults((n) => (n % 2 === 0 ? 'reset-after-forward' : 'forward'));
    const client = createClient({ url: proxy.url, key, flushAt: 20, retryBaseMs: 20 });
    const keys = trackMany(client, 120, 'sdk.reset');
    await client.flush();
    assert.ok(client.stats().retries >= 3, `retried (${client.stats().retries})`);
    const cut = proxy.seen.filter((r) => r.fault === 'reset-after-forward');
    assert.ok(cut.length >= 3);
    for (const r of cut) {
      const retry = proxy.seen.find((s) => s.at >= r.at && s !== r && s.keys[0] === r.keys[0]);
      assert.deepEqual(retry?.keys, r.keys, 'the retry resends the same events with the same keys');
    }
    await assertExactlyOnce(tenant, keys, client);
    await client.close();
  });

  it('503 with Retry-After (after Floodgate stored the batch, and instead of it): never retried sooner, stored once', async () => {
    const tenant = 'sdk-503';
    const key = await fg.key(tenant);
    const faults: Fault[] = [
      { status: 503, retryAfter: '1', forwarded: true },
      { status: 503, retryAfter: '1' },
    ];
    proxy.setFaults((n) => faults[n] ?? 'forward');
    const reports: RequestReport[] = [];
    const client = createClient({ url: proxy.url, key, flushAt: 50, retryBaseMs: 10, onRequest: (r) => reports.push(r) });
    const keys = Array.from({ length: 50 }, (_, i) => client.track({ type: 'sdk.503', data: { i } }, { priority: 'critical' }));
    await client.flush();
    assert.deepEqual(
      reports.map((r) => r.status),
      [503, 503, 202],
    );
    assert.ok(
      reports.slice(0, 2).every((r) => r.retryInMs! >= 1000),
      'waits at least Retry-After',
    );
    const [a, b, c] = proxy.seen.slice(-3);
    assert.ok(b!.at - a!.at >= 1000 && c!.at - b!.at >= 1000, `attempts ${b!.at - a!.at} and ${c!.at - b!.at} ms apart`);
    assert.notEqual(a!.sentAt, c!.sentAt, 'sent_at is the time of each attempt');
    await assertExactlyOnce(tenant, keys, client);
    await client.close();
  });

  it("Floodgate's own 429 (rate-limited key): waits Retry-After and delivers everything once", async () => {
    const tenant = 'sdk-429';
    const key = await fg.key(tenant, { perSecond: 2, burst: 1 });
    const reports: RequestReport[] = [];
    const client = createClient({ url: fg.api.url, key, flushAt: 30, onRequest: (r) => reports.push(r) });
    const keys = trackMany(client, 180, 'sdk.429');
    await client.flush();
    const limited = reports.filter((r) => r.status === 429);
    assert.ok(limited.length > 0, 'the key was rate limited');
    assert.ok(
      limited.every((r) => r.errorCode === 'rate_limited' && r.retryInMs! >= 1000),
      'each retry waited at least Retry-After (1 s)',
    );
    await assertExactlyOnce(tenant, keys, client);
    await client.close();
  });

  it('a storm of mixed faults (resets before and after, 503s, 500s) still stores every event exactly once', async () => {
    const tenant = 'sdk-storm';
    const key = await fg.key(tenant);
    const random = seededRandom(42);
    proxy.setFaults(() => {
      const r = random();
      if (r < 0.2) return 'reset-after-forward';
      if (r < 0.3) return 'reset';
      if (r < 0.45) return { status: 503, retryAfter: '0', forwarded: true };
      if (r < 0.55) return { status: 500 };
      return 'forward';
    });
    const client = createClient({
      url: proxy.url,
      key,
      flushAt: 25,
      retryBaseMs: 10,
      retryMaxMs: 100,
      maxRetries: 50,
      throttle: false,
      gzipAboveBytes: 1000,
    });
    const keys = trackMany(client, 600, 'sdk.storm');
    await client.flush();
    assert.ok(client.stats().retries > 5, `retried ${client.stats().retries} times`);
    await assertExactlyOnce(tenant, keys, client);
    await client.close();
  });

  it('an API process SIGTERMed and restarted while the client sends: nothing lost, nothing twice', async () => {
    const tenant = 'sdk-restart';
    const key = await fg.key(tenant);
    const port = await freePort();
    const vars = envVars(fg.env, { PORT: String(port), HOST: '127.0.0.1', API_PROCESSES: '1', METRICS_PORT: '0', SHED_MODE: 'off' });
    const url = `http://127.0.0.1:${port}`;
    const ready = () => eventually(async () => (await fetch(`${url}/readyz`).catch(() => null))?.status === 200, 'api ready', 30_000);
    let api: FloodgateProcess = await spawnFloodgate(['api'], vars);
    try {
      await ready();
      const reports: RequestReport[] = [];
      const client = createClient({
        url,
        key,
        flushAt: 20,
        flushIntervalMs: 50,
        maxRetries: 100,
        retryBaseMs: 50,
        retryMaxMs: 500,
        onRequest: (r) => reports.push(r),
      });
      const keys: string[] = [];
      let i = 0;
      const ticker = setInterval(
        () =>
          keys.push(
            ...Array.from({ length: 5 }, () => client.track({ type: 'sdk.restart', data: { i: i++ } }, { priority: CLASSES[i % 3] })),
          ),
        10,
      );
      try {
        await eventually(async () => client.stats().delivered > 200, 'traffic flowing', 30_000);
        api.child.kill('SIGTERM');
        assert.equal((await api.exited).code, 0, 'the API shut down cleanly');
        await eventually(async () => reports.some((r) => r.status === null), 'the client saw the API gone', 30_000);
        api = await spawnFloodgate(['api'], vars);
        await ready();
        const deliveredAtRestart = client.stats().delivered;
        await eventually(async () => client.stats().delivered > deliveredAtRestart + 200, 'traffic flowing again', 30_000);
      } finally {
        clearInterval(ticker);
      }
      const result = await client.close({ timeoutMs: 30_000 });
      assert.equal(result.undelivered, 0);
      assert.ok(
        reports.some((r) => r.status === null && r.outcome === 'transient'),
        'connection failures were retried',
      );
      await assertExactlyOnce(tenant, keys, client);
    } finally {
      api.child.kill('SIGTERM');
      await api.exited;
    }
  });
});
