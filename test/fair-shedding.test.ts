import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApiKey } from '../lib/api-keys.js';
import { createTestEnv, eventually, json, startTestApi, type TestApi, type TestEnv } from './support.js';

const LOW_WATERMARK = 1000;
const HIGH_WATERMARK = 100_000;

/** `connections` closed-loop senders of low events with `key` for `ms`; counts answers by status. */
async function flood(api: TestApi, key: string, connections: number, ms: number): Promise<Record<number, number>> {
  const counts: Record<number, number> = {};
  const deadline = Date.now() + ms;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (Date.now() < deadline) {
        const res = await fetch(`${api.url}/v1/events`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, 'x-priority': 'low' },
          body: JSON.stringify({ type: 'fair.share' }),
        });
        await res.arrayBuffer();
        counts[res.status] = (counts[res.status] ?? 0) + 1;
      }
    }),
  );
  return counts;
}

const total = (counts: Record<number, number>) => Object.values(counts).reduce((a, b) => a + b, 0);

describe('fair shedding between tenants on a real listening server', () => {
  let env: TestEnv;
  let api: TestApi;
  before(async () => {
    // No worker and a backlog a quarter of the way between the watermarks: the controller sheds half of the low
    // class, whatever the latency on a busy test machine (those targets are out of reach).
    env = await createTestEnv({
      SHED_MODE: 'enforce',
      SHED_TARGET_P99_MS: '60000',
      SHED_TARGET_EVENT_LOOP_DELAY_MS: '60000',
      SHED_BACKLOG_LOW_ENTRIES: String(LOW_WATERMARK),
      SHED_BACKLOG_HIGH_ENTRIES: String(HIGH_WATERMARK),
      GATE_OPEN_AFTER_MS: '600000',
      // Refusals answered at once: the flooding tenant's connections come straight back, as in the worst case.
      SHED_REFUSAL_DELAY_MS: '0',
    });
    const backlog = LOW_WATERMARK + (HIGH_WATERMARK - LOW_WATERMARK) / 4;
    for (let i = 0; i < backlog; i += 5000) {
      const pipeline = env.redis.pipeline();
      for (let j = i; j < Math.min(backlog, i + 5000); j++) pipeline.xadd(env.config.streamKey, '*', 'e', 'x');
      await pipeline.exec();
    }
    api = await startTestApi(env);
  });
  after(async () => {
    await api?.close();
    await env?.cleanup();
  });

  it('a tenant flooding the low class at 10× is shed, a quiet tenant of the same class is not', async () => {
    await eventually(async () => {
      const load = await json(await fetch(`${api.url}/v1/admin/load`, { headers: { authorization: `Bearer ${api.adminKey}` } }));
      return load.controller.shedProbability.low >= 0.45;
    }, 'the backlog sheds about half of the low class');
    const { key: noisy } = await createApiKey(env.pool, { tenant: 'noisy' });
    const { key: quiet } = await createApiKey(env.pool, { tenant: 'quiet' });
    const [noisyCounts, quietCounts] = await Promise.all([flood(api, noisy, 10, 6000), flood(api, quiet, 1, 6000)]);
    assert.ok(
      total(noisyCounts) >= 5 * total(quietCounts),
      `the noisy tenant sends far more: ${JSON.stringify({ noisyCounts, quietCounts })}`,
    );
    assert.ok(
      (quietCounts[202] ?? 0) >= 0.99 * total(quietCounts),
      `the quiet tenant keeps ≥ 99 % success: ${JSON.stringify(quietCounts)}`,
    );
    // Half the class is shed: ~55 % of the noisy tenant's requests once its demand is measured (its first second is not).
    assert.ok((noisyCounts[503] ?? 0) >= 0.35 * total(noisyCounts), `the noisy tenant takes the shedding: ${JSON.stringify(noisyCounts)}`);
    const load = await json(await fetch(`${api.url}/v1/admin/load`, { headers: { authorization: `Bearer ${api.adminKey}` } }));
    const shown = load.fairness.top.find((t: { tenant: string }) => t.tenant === 'noisy');
    assert.ok(shown && shown.shedProbability.low > 0.5, `GET /v1/admin/load shows who is shed: ${JSON.stringify(load.fairness)}`);
  });
});
