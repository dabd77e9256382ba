import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createTestEnv, enqueue, eventually, json, startTestApi, type TestApi, type TestEnv } from './support.js';

describe('class gates: breakers the controller opens for a class it sheds entirely', () => {
  let env: TestEnv;
  let api: TestApi;
  before(async () => {
    // No worker: entries put on the stream stay there, so the backlog is whatever the test makes it.
    env = await createTestEnv({
      SHED_MODE: 'enforce',
      // Only the backlog drives shedding here, however slow a busy test machine makes requests.
      SHED_TARGET_P99_MS: '60000',
      SHED_TARGET_EVENT_LOOP_DELAY_MS: '60000',
      SHED_BACKLOG_LOW_ENTRIES: '1',
      SHED_BACKLOG_HIGH_ENTRIES: '2',
      GATE_OPEN_AFTER_MS: '500',
      GATE_RESET_TIMEOUT_MS: '500',
    });
    api = await startTestApi(env);
  });
  after(async () => {
    await api?.close();
    await env?.cleanup();
  });

  async function load(): Promise<{ breakers: Record<string, string>; gates: { openAfterMs: number } }> {
    return json(await fetch(`${api.url}/v1/admin/load`, { headers: { authorization: `Bearer ${api.adminKey}` } }));
  }

  async function send(priority: string): Promise<{ status: number; error?: string }> {
    const res = await api.post({ type: 'gated' }, { 'x-priority': priority });
    const body = await json(res);
    return { status: res.status, error: body.error };
  }

  it('open while the backlog keeps a class fully shed, refusing it outright; a half-open trial closes them once it is not', async () => {
    const initial = await load();
    assert.deepEqual(initial.breakers, { redis_write: 'closed', gate_normal: 'closed', gate_low: 'closed' });
    assert.equal(initial.gates.openAfterMs, 500);

    for (let i = 0; i < 3; i++) await enqueue(env, [{ type: 'backlog' }]);
    await eventually(async () => {
      const { breakers } = await load();
      return breakers.gate_normal === 'open' && breakers.gate_low === 'open';
    }, 'both gates open');
    for (const priority of ['normal', 'low']) assert.deepEqual(await send(priority), { status: 503, error: 'overloaded' });
    assert.equal((await send('critical')).status, 202, 'critical is never gated');
    const metrics = await api.metrics();
    assert.match(metrics, /^floodgate_breaker_transitions_total\{breaker="gate_normal",to="open"[^}]*\} [1-9]/m);
    assert.match(metrics, /^floodgate_shed_requests_total\{priority="normal",reason="breaker"[^}]*\} [1-9]/m);

    await env.redis.del(env.config.streamKey);
    await eventually(async () => (await send('normal')).status === 202, 'normal admitted again');
    await eventually(async () => (await send('low')).status === 202, 'low admitted again');
    const { breakers } = await load();
    assert.equal(breakers.gate_normal, 'closed');
    assert.equal(breakers.gate_low, 'closed');
    assert.match(await api.metrics(), /^floodgate_breaker_transitions_total\{breaker="gate_normal",to="half_open"[^}]*\} [1-9]/m);
  });
});
