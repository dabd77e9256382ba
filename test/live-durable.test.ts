import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { createApiKey } from '../lib/api-keys.js';
import { createLivePublisher, liveDedupWindowMs, type LivePublisher } from '../lib/live-publisher.js';
import { createLogger } from '../lib/logger.js';
import { createFlusher, type Flusher } from '../workers/flusher.js';
import { openSse, openWs, type LiveClient } from './live-clients.js';
import { countEvents, createTestEnv, enqueue, envVars, eventually, startTestApi, type TestApi, type TestEnv } from './support.js';

const TENANT = 'durable';

/** Runs test/live-crash-worker.ts with a fault; resolves with the signal that ended it. */
async function crashWorker(env: TestEnv, fault: 'after-commit' | 'after-publish'): Promise<NodeJS.Signals | null> {
  const script = fileURLToPath(new URL('./live-crash-worker.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), script, fault], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...envVars(env, { FLUSH_INTERVAL_MS: '20' }) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  // A worker that never reaches its fault point (it read nothing) must not hold the test: it is killed and fails it.
  const timer = setTimeout(() => child.kill('SIGTERM'), 30_000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.once('exit', (c, s) => resolve([c, s])),
  );
  clearTimeout(timer);
  assert.equal(signal, 'SIGKILL', `the worker killed itself at its fault point (exit ${code}: ${stderr})`);
  return signal;
}

/** The worker that takes over: flusher and live publisher as `floodgate worker` wires them. */
async function startRescuer(
  env: TestEnv,
): Promise<{ flusher: Flusher; publisher: LivePublisher; registry: Registry; close(): Promise<void> }> {
  const registry = new Registry();
  const logger = createLogger('silent', 'worker-test');
  const publisher = createLivePublisher({
    redis: env.redis,
    pool: env.pool,
    streamKey: env.config.streamKey,
    resumeWindowMs: env.config.liveResumeWindowMs,
    dedupWindowMs: liveDedupWindowMs(env.config),
    logger,
    registry,
  });
  const flusher = createFlusher({
    config: env.config,
    pool: env.pool,
    redis: env.redis,
    logger,
    consumerName: 'rescuer',
    onCommitted: publisher.onCommitted,
  });
  await flusher.start();
  return {
    flusher,
    publisher,
    registry,
    async close() {
      await flusher.close();
      await publisher.close();
    },
  };
}

/** Two entries of the tenant: keyed and unkeyed events, one key repeated (its second event is refused). */
async function enqueueBatch(env: TestEnv, tag: string): Promise<string[]> {
  const a = await enqueue(
    env,
    Array.from({ length: 6 }, (_, i) => (i % 2 ? { type: `${tag}.keyed`, idempotency_key: `${tag}-${i}` } : { type: `${tag}.plain` })),
    { tenant: TENANT },
  );
  const b = await enqueue(env, [{ type: `${tag}.plain` }, { type: `${tag}.repeat`, idempotency_key: `${tag}-1` }], { tenant: TENANT });
  // The repeated key was claimed by the first entry's event: its second event is never stored.
  return [...a, b[0]!];
}

const ids = (c: LiveClient) => c.events.map((r) => r.event.id as string);

describe('live view: a worker killed between its commit and its publish or acknowledgement', () => {
  let env: TestEnv;
  let api: TestApi;
  let key: string;
  let rescuer: Awaited<ReturnType<typeof startRescuer>> | undefined;
  const clients: LiveClient[] = [];

  const pending = async () => Number(((await env.redis.xpending(env.config.streamKey, env.config.consumerGroup)) as [number])[0]);
  const drained = async () => (await pending()) === 0 && (await env.redis.xlen(env.config.streamKey)) === 0;

  before(async () => {
    env = await createTestEnv({ CLAIM_IDLE_MS: '300', FLUSH_INTERVAL_MS: '20' });
    api = await startTestApi(env);
    key = (await createApiKey(env.pool, { tenant: TENANT, scopes: ['read'] })).key;
    clients.push(await openSse(api.url, key), await openWs(api.url, key));
  });
  after(async () => {
    for (const c of clients) c.close();
    await rescuer?.close();
    await api?.close();
    await env?.cleanup();
  });

  it('killed after COMMIT, before publishing: the worker that takes the entries over publishes them, once', async () => {
    const expected = await enqueueBatch(env, 'first');
    await crashWorker(env, 'after-commit');
    assert.ok((await countEvents(env, TENANT)) > 0, 'the doomed worker committed before it died');
    assert.ok((await pending()) > 0, 'and left its entries pending');
    for (const c of clients) assert.deepEqual(ids(c), [], 'nothing was published');

    rescuer = await startRescuer(env);
    try {
      await eventually(drained, 'the entries taken over, written again and acknowledged', 20_000);
      assert.equal(await countEvents(env, TENANT), expected.length, 'stored once');
      for (const c of clients) assert.deepEqual(ids(await waitAll(c, expected.length)), expected);
    } finally {
      // The next case needs its doomed worker to be the only one reading.
      await rescuer.close();
      rescuer = undefined;
    }
  });

  it('killed after publishing, before acknowledging: the entries come back and are not shown again', async () => {
    const earlier = ids(clients[0]!);
    const expected = await enqueueBatch(env, 'second');
    await crashWorker(env, 'after-publish');
    assert.ok((await pending()) > 0, 'the doomed worker left its entries pending');
    for (const c of clients) await c.waitForEvents(earlier.length + 1);

    rescuer = await startRescuer(env);
    await eventually(drained, 'the entries taken over, written again and acknowledged', 20_000);
    await eventually(async () => rescuer!.publisher.pending() === 0, 'the rescuer has published what it wrote');

    // Every client's view: each event of both batches, once, in order; nothing more arrives.
    const all = [...earlier, ...expected];
    for (const c of clients) await waitAll(c, all.length);
    const late = await enqueue(env, [{ type: 'after' }], { tenant: TENANT });
    for (const c of clients) assert.deepEqual(ids(await waitAll(c, all.length + 1)), [...all, ...late]);
    const repeats = await rescuer.registry.getSingleMetricAsString('floodgate_live_publish_repeats_total');
    assert.ok(Number(/ (\d+)$/m.exec(repeats)?.[1]) > 0, 'the rescuer did try to publish the redelivered entries');

    // Resuming from before the crash replays each event once too.
    const cursor = clients[0]!.events[earlier.length - 1]!.id;
    const resumedSse = await openSse(api.url, key, '/v1/events/live', { 'last-event-id': cursor });
    const resumedWs = await openWs(api.url, key, `?last_event_id=${cursor}`);
    clients.push(resumedSse, resumedWs);
    for (const c of [resumedSse, resumedWs]) {
      assert.deepEqual(ids(await waitAll(c, expected.length + 1)), [...expected, ...late]);
      assert.deepEqual(c.gaps, []);
    }
  });
});

/** Waits for `n` events, then checks that no more than `n` arrived once the stream has settled. */
async function waitAll(c: LiveClient, n: number): Promise<LiveClient> {
  await c.waitForEvents(n);
  // A repeat would come with the batch it belongs to, before the probe event that follows it in the tenant's order.
  assert.equal(c.events.length, n, `exactly ${n} events, no repeats`);
  return c;
}
