import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApiKey } from '../lib/api-keys.js';
import { openSse, openWs, type LiveClient } from './live-clients.js';
import { createTestEnv, eventually, json, startCluster, type TestCluster, type TestEnv } from './support.js';

describe('live view on `floodgate api` with two processes and `floodgate worker`', () => {
  let env: TestEnv;
  let cluster: TestCluster;
  let url: string;
  let metricsUrl: string;
  let key: string;
  const clients: LiveClient[] = [];

  const post = async (events: Record<string, unknown>[]) => {
    const res = await fetch(`${url}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ events }),
    });
    assert.equal(res.status, 202);
    return (await json(res)).ids as string[];
  };

  before(async () => {
    env = await createTestEnv();
    cluster = await startCluster(env);
    ({ url, metricsUrl } = cluster);
    key = (await createApiKey(env.pool, { tenant: 'clustered', scopes: ['ingest', 'read'] })).key;
  });
  after(async () => {
    for (const c of clients) c.close();
    await cluster?.stop();
    await env?.cleanup();
  });

  it('serves every connection from whichever process takes it, and resumes on any process', async () => {
    // Connections spread over both processes: the cluster primary hands each to a process that is free, in turn
    // (on a busy machine not necessarily evenly).
    for (let i = 0; i < 4; i++) clients.push(await openSse(url, key), await openWs(url, key));
    // The primary asks every process for its metrics; on a busy machine one answer may come too late: ask again.
    let text = '';
    await eventually(
      async () => !(text = await (await fetch(metricsUrl)).text()).startsWith('metrics collection failed'),
      'a cluster scrape',
    );
    assert.match(
      text,
      /^floodgate_live_connections\{protocol="sse",role="api"\} 4$/m,
      'the cluster counts the connections of both processes',
    );
    assert.match(text, /^floodgate_live_connections\{protocol="ws",role="api"\} 4$/m);

    const first = await post([{ type: 'c.one' }, { type: 'c.two' }]);
    for (const c of clients)
      assert.deepEqual(
        (await c.waitForEvents(2)).map((r) => r.event.id),
        first,
      );

    // Each client leaves after the first event and comes back: its new connection may land on the other process.
    const cursors = clients.map((c) => c.events[0]!.id);
    for (const c of clients) c.close();
    await Promise.all(clients.map((c) => c.ended));
    const missed = await post([{ type: 'c.three' }]);
    const watcher = await openSse(url, key);
    clients.push(watcher);
    const live = await post([{ type: 'c.four' }]);
    await watcher.waitForEvents(1);
    const resumed = await Promise.all(
      cursors.map((cursor, i) =>
        i % 2 === 0 ? openSse(url, key, '/v1/events/live', { 'last-event-id': cursor }) : openWs(url, key, `?last_event_id=${cursor}`),
      ),
    );
    clients.push(...resumed);
    const expected = [first[1]!, ...missed, ...live];
    for (const c of resumed)
      assert.deepEqual(
        (await c.waitForEvents(expected.length)).map((r) => r.event.id),
        expected,
      );
    for (const c of resumed) assert.deepEqual(c.gaps, []);
  });

  it('ends live connections with server_shutdown when the API stops, and stops promptly', async () => {
    const sse = await openSse(url, key);
    const ws = await openWs(url, key);
    cluster.api.child.kill('SIGTERM');
    const { code } = await cluster.api.exited;
    await Promise.all([sse.ended, ws.ended]);
    assert.equal(code, 0, 'a clean exit: the live connections did not make the primary kill its processes');
    assert.equal(sse.closeReason, 'server_shutdown');
    assert.equal(ws.closeReason, 'server_shutdown');
    assert.equal(ws.closeCode, 1001);
  });
});
