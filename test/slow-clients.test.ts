import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { createApiKey } from '../lib/api-keys.js';
import type { Priority } from '../lib/event-schema.js';
import { slowUpload, type SlowUploadResult } from '../loadtest/slow-upload.js';
import { createTestEnv, json, startTestApi, type TestApi, type TestEnv } from './support.js';

const EVENT = JSON.stringify({ type: 'slow.upload', data: { note: 'x'.repeat(200) } });

/** Starts `perSecond` slow uploads a second for `ms`; resolves with every result. */
async function slowUploads(
  api: TestApi,
  key: string,
  perSecond: number,
  ms: number,
  uploadMs: number,
  priority: Priority = 'normal',
): Promise<SlowUploadResult[]> {
  const results: Promise<SlowUploadResult>[] = [];
  const started = Date.now();
  while (Date.now() - started < ms) {
    results.push(slowUpload({ url: api.url, key, body: EVENT, uploadMs, pieces: 5, priority, timeoutMs: uploadMs + 10_000 }).result);
    await new Promise((r) => setTimeout(r, 1000 / perSecond));
  }
  return Promise.all(results);
}

/** `senders` closed-loop senders for `ms`, alternating low and normal, pausing `pauseMs` between requests; statuses per class. */
async function steadyTraffic(api: TestApi, ms: number, senders: number, pauseMs: number) {
  const counts: Record<string, Record<number, number>> = { low: {}, normal: {} };
  const deadline = Date.now() + ms;
  await Promise.all(
    Array.from({ length: senders }, async (_, i) => {
      const priority = i % 2 === 0 ? 'low' : 'normal';
      while (Date.now() < deadline) {
        const res = await api.post({ type: 'steady', data: { i } }, { 'x-priority': priority });
        await res.arrayBuffer();
        counts[priority]![res.status] = (counts[priority]![res.status] ?? 0) + 1;
        await new Promise((r) => setTimeout(r, pauseMs));
      }
    }),
  );
  return counts;
}

describe('slow uploaders on a real listening server', () => {
  let env: TestEnv;
  let api: TestApi;
  before(async () => {
    // The latency target sits far above what this server takes to handle one event (even on a busy test machine),
    // and far below the time a slow client takes to send one: only the upload time could push the p99 over it.
    env = await createTestEnv({ SHED_MODE: 'enforce', SHED_TARGET_P99_MS: '500', SHED_TARGET_EVENT_LOOP_DELAY_MS: '2000' });
    api = await startTestApi(env);
  });
  after(async () => {
    await api?.close();
    await env?.cleanup();
  });

  it("do not make the shedder refuse another tenant: the control signal is the server's work, not the upload", async () => {
    const { key: slowKey } = await createApiKey(env.pool, { tenant: 'slow-link' });
    // Critical, so that the shedder never refuses the slow requests themselves.
    const uploads = slowUploads(api, slowKey, 20, 7000, 2500, 'critical');
    // Let the slow requests fill the latency window first, then measure the other tenant.
    await new Promise((r) => setTimeout(r, 3000));
    const counts = await steadyTraffic(api, 3500, 4, 40);
    const load = await json(await fetch(`${api.url}/v1/admin/load`, { headers: { authorization: `Bearer ${api.adminKey}` } }));
    const results = await uploads;
    for (const priority of ['low', 'normal']) {
      assert.deepEqual(
        Object.keys(counts[priority]!),
        ['202'],
        `${priority} traffic of the other tenant is not shed: ${JSON.stringify(counts)}`,
      );
    }
    const failed = results.filter((r) => r.status !== 202);
    assert.deepEqual(failed, [], 'every slow upload is accepted');
    assert.ok(load.signals.p99Ms < 2500, `the window holds the server's time, not the 2.5 s uploads: p99 ${load.signals.p99Ms} ms`);
    assert.ok(load.signals.samples > 0, 'the slow requests are in the window');
  });
});

/** One request on its own keep-alive socket; resolves with the answer and the agent that keeps the socket open. */
async function keptAlive(
  url: string,
  key: string,
): Promise<{ status: number; code: string | undefined; connection: string | undefined; agent: Agent }> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const target = new URL('/v1/events', url);
  return new Promise((resolve, reject) => {
    const req = request(
      target,
      { method: 'POST', agent, headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` } },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            code: text.startsWith('{') ? JSON.parse(text).error : undefined,
            connection: res.headers.connection,
            agent,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify({ type: 'kept.alive' }));
  });
}

/** Starts `n` uploads that send half their body and stall; resolves once the server has had time to admit them. */
async function stalled(api: TestApi, key: string, n: number, priority: Priority = 'critical') {
  const uploads = Array.from({ length: n }, () =>
    slowUpload({ url: api.url, key, body: EVENT, uploadMs: 10, pieces: 2, stallAt: 0.5, priority, timeoutMs: 30_000 }),
  );
  await new Promise((r) => setTimeout(r, 500));
  return {
    results: Promise.all(uploads.map((u) => u.result)),
    release: () => uploads.forEach((u) => u.socket.destroy()),
  };
}

describe('stalled bodies on a real listening server', () => {
  let env: TestEnv;
  before(async () => {
    env = await createTestEnv({ SHED_MODE: 'enforce', SHED_TARGET_P99_MS: '1000', SHED_TARGET_EVENT_LOOP_DELAY_MS: '1000' });
  });
  after(async () => {
    await env?.cleanup();
  });

  it('answer 408 body_timeout once BODY_TIMEOUT_MS has passed without the whole body, and close the connection', async () => {
    const api = await startTestApi(env, { bodyTimeoutMs: 300 });
    try {
      const started = performance.now();
      const upload = slowUpload({ url: api.url, key: api.key, body: EVENT, uploadMs: 10, pieces: 2, stallAt: 0.5, timeoutMs: 10_000 });
      const result = await upload.result;
      assert.equal(result.status, 408, JSON.stringify(result));
      assert.equal(result.code, 'body_timeout');
      assert.ok(result.closed, 'the server closes the connection');
      assert.ok(performance.now() - started < 10_000, 'answered by the server, not given up by the client');
      assert.equal((await api.post({ type: 'after.timeout' })).status, 202, 'and keeps serving');
    } finally {
      await api.close();
    }
  });

  it('do not count as in flight: one key holding more stalled requests than the hard limit does not block critical traffic', async () => {
    const api = await startTestApi(env, { shedHardMaxInFlight: 10, bodyTimeoutMs: 30_000 });
    try {
      const { key } = await createApiKey(env.pool, { tenant: 'stalling' });
      const held = await stalled(api, key, 15);
      const res = await api.post({ type: 'critical.after.stall' }, { 'x-priority': 'critical' });
      assert.equal(res.status, 202, JSON.stringify(await res.json().catch(() => null)));
      held.release();
      await held.results;
    } finally {
      await api.close();
    }
  });

  it('are capped per key: past MAX_IN_FLIGHT_PER_KEY the key gets 429 too_many_in_flight, other keys are served', async () => {
    const api = await startTestApi(env, { maxInFlightPerKey: 5, bodyTimeoutMs: 30_000 });
    try {
      const { key } = await createApiKey(env.pool, { tenant: 'stalling' });
      const held = await stalled(api, key, 5);
      const refused = await slowUpload({ url: api.url, key, body: EVENT, uploadMs: 10, pieces: 1, priority: 'critical', timeoutMs: 10_000 })
        .result;
      assert.equal(refused.status, 429, JSON.stringify(refused));
      assert.equal(refused.code, 'too_many_in_flight');
      assert.equal((await api.post({ type: 'other.key' }, { 'x-priority': 'critical' })).status, 202);
      held.release();
      await held.results;
      // Released: the key is served again.
      await new Promise((r) => setTimeout(r, 100));
      const again = await slowUpload({ url: api.url, key, body: EVENT, uploadMs: 10, pieces: 1, timeoutMs: 10_000 }).result;
      assert.equal(again.status, 202);
    } finally {
      await api.close();
    }
  });
});

describe('connections per key on a real listening server', () => {
  let env: TestEnv;
  let api: TestApi;
  before(async () => {
    env = await createTestEnv();
    api = await startTestApi(env, { maxConnectionsPerKey: 3 });
  });
  after(async () => {
    await api?.close();
    await env?.cleanup();
  });

  it('past MAX_CONNECTIONS_PER_KEY the key gets 429 too_many_connections and the socket is closed; other keys are served', async () => {
    const { key } = await createApiKey(env.pool, { tenant: 'many-sockets' });
    const open = await Promise.all([1, 2, 3].map(() => keptAlive(api.url, key)));
    assert.deepEqual(
      open.map((o) => o.status),
      [202, 202, 202],
    );
    const fourth = await keptAlive(api.url, key);
    assert.equal(fourth.status, 429);
    assert.equal(fourth.code, 'too_many_connections');
    assert.equal(fourth.connection, 'close');
    const other = await keptAlive(api.url, api.key);
    assert.equal(other.status, 202, 'another key has its own connections');
    // One of the three sockets closes: the key may open another.
    open[0]!.agent.destroy();
    await new Promise((r) => setTimeout(r, 100));
    const fifth = await keptAlive(api.url, key);
    assert.equal(fifth.status, 202);
    for (const o of [...open, fourth, other, fifth]) o.agent.destroy();
  });
});
