import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { runApi, type RunningApi } from '../app/run.js';
import { createApiKey } from '../lib/api-keys.js';
import { createTestEnv, eventually, type TestEnv } from './support.js';

describe('a client that disconnects mid-body', () => {
  let env: TestEnv;
  let api: RunningApi;
  let key: string;
  const logged: Record<string, unknown>[] = [];
  before(async () => {
    env = await createTestEnv();
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) logged.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    api = await runApi(env.config, pino({ level: 'info' }, sink));
    key = (await createApiKey(env.pool, { tenant: 'acme' })).key;
  });
  after(async () => {
    await api?.close();
    await env?.cleanup();
  });

  it('is counted as client-closed (499), not as a 500 with a stack in the logs', async () => {
    const socket = connect(api.port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(
      `POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"type":"half`,
    );
    // Let the server start reading the body, then go away.
    await new Promise((resolve) => setTimeout(resolve, 200));
    socket.destroy();
    const closed = /floodgate_http_request_duration_seconds_count\{[^}]*route="\/v1\/events",method="POST",status="499"[^}]*\} 1/;
    await eventually(async () => closed.test(await api.registry.metrics()), 'a 499 in the request metrics', 5000);
    const metrics = await api.registry.metrics();
    assert.doesNotMatch(metrics, /status="500"/);
    assert.doesNotMatch(metrics, /code="internal_error"/);
    assert.deepEqual(
      logged.filter((l) => Number(l.level) >= 50),
      [],
      'nothing logged as an error',
    );
  });
});
