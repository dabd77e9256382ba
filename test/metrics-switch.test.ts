import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestEnv, eventually, json, startTestApi, type TestApi, type TestEnv } from './support.js';

describe('API metrics, on and off', () => {
  let env: TestEnv;
  let on: TestApi;
  let off: TestApi;
  before(async () => {
    env = await createTestEnv();
    on = await startTestApi(env);
    off = await startTestApi(env, { metricsEnabled: false });
  });
  after(async () => {
    await on?.close();
    await off?.close();
    await env?.cleanup();
  });

  it('labels ingest request durations with the priority class, and other routes with none', async () => {
    assert.equal((await on.post({ type: 'signup' }, { 'x-priority': 'critical' })).status, 202);
    assert.equal((await on.post({ type: 'signup' }, { 'x-priority': 'low' })).status, 202);
    assert.equal((await fetch(`${on.url}/healthz`)).status, 200);
    const text = await on.metrics();
    assert.match(
      text,
      /floodgate_http_request_duration_seconds_count\{[^}]*route="\/v1\/events"[^}]*status="202"[^}]*priority="critical"[^}]*\} 1/,
    );
    assert.match(
      text,
      /floodgate_http_request_duration_seconds_count\{[^}]*route="\/v1\/events"[^}]*status="202"[^}]*priority="low"[^}]*\} 1/,
    );
    assert.match(text, /floodgate_http_request_duration_seconds_count\{[^}]*route="\/healthz"[^}]*priority="none"[^}]*\} 1/);
  });

  it('with METRICS_ENABLED=false measures nothing per request, still ingests, and still feeds the shedder its latency window', async () => {
    for (let i = 0; i < 5; i++) assert.equal((await off.post({ type: 'signup', data: { i } })).status, 202);
    // Nothing is measured per request and no default collectors run (the shedder's per-tick state remains).
    const text = await off.metrics();
    assert.doesNotMatch(text, /^floodgate_(http|events|request|redis)_/m);
    assert.doesNotMatch(text, /^(nodejs|process)_/m);
    assert.match(text, /^floodgate_shed_level /m);
    await eventually(async () => {
      const res = await fetch(`${off.url}/v1/admin/load`, { headers: { authorization: `Bearer ${off.adminKey}` } });
      const load = await json(res);
      return load.signals.samples >= 5;
    }, 'the admin load view to count the requests');
  });
});
