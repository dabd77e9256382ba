import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../lib/config.js';
import { createTestEnv, freePort, json, startTestApi, type TestApi, type TestEnv } from './support.js';

describe('CRITICAL_PORT, a second port for critical producers', () => {
  let env: TestEnv;
  let api: TestApi;
  let criticalPort: number;
  before(async () => {
    env = await createTestEnv({ SHED_MODE: 'enforce' });
    criticalPort = await freePort();
    api = await startTestApi(env, { criticalPort });
  });
  after(async () => {
    await api?.close();
    await env?.cleanup();
  });

  it('serves the same API as PORT, and closes with it', async () => {
    const critical = `http://127.0.0.1:${criticalPort}`;
    const res = await fetch(`${critical}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${api.key}`, 'x-priority': 'critical' },
      body: JSON.stringify({ type: 'order.paid', data: { n: 1 } }),
    });
    assert.equal(res.status, 202);
    assert.equal((await json(res)).ids.length, 1);
    const unauthenticated = await fetch(`${critical}/v1/events`, { method: 'POST', body: '{}' });
    assert.equal(unauthenticated.status, 401, 'the same authentication');
    await unauthenticated.arrayBuffer();
    assert.equal((await fetch(`${api.url}/healthz`)).status, 200, 'PORT still serves');

    await api.close();
    await assert.rejects(fetch(`${critical}/healthz`), 'no longer listening once closed');
  });

  it('must differ from PORT', () => {
    assert.throws(() => loadConfig({ PORT: '8080', CRITICAL_PORT: '8080' }), ConfigError);
    assert.equal(loadConfig({ PORT: '8080', CRITICAL_PORT: '8081' }).criticalPort, 8081);
  });
});
