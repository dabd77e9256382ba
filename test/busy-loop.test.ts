import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createTestEnv, json, startTestApi, type TestApi, type TestEnv } from './support.js';

/** A few low-priority senders that pause between requests: latency over a 1 ms target, an event loop mostly idle. */
async function trickle(api: TestApi, ms: number): Promise<Record<number, number>> {
  const statuses: Record<number, number> = {};
  const deadline = Date.now() + ms;
  await Promise.all(
    Array.from({ length: 4 }, async (_, i) => {
      while (Date.now() < deadline) {
        const res = await api.post({ type: 'trickle', data: { i } }, { 'x-priority': 'low' });
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        await res.arrayBuffer();
        await sleep(50);
      }
    }),
  );
  return statuses;
}

/** Starts an API in enforce mode whose every request is over the latency target. */
async function slowTarget(extra: Record<string, string>): Promise<{ env: TestEnv; api: TestApi }> {
  const env = await createTestEnv({ SHED_MODE: 'enforce', SHED_TARGET_P99_MS: '1', SHED_TARGET_EVENT_LOOP_DELAY_MS: '1000', ...extra });
  return { env, api: await startTestApi(env) };
}

describe('latency counts as overload only while the event loop is busy (real listening server)', () => {
  let idle: { env: TestEnv; api: TestApi } | undefined;
  let always: { env: TestEnv; api: TestApi } | undefined;
  before(async () => {
    idle = await slowTarget({});
    always = await slowTarget({ SHED_BUSY_LOOP_PERCENT: '0' });
  });
  after(async () => {
    for (const s of [idle, always]) {
      await s?.api.close();
      await s?.env.cleanup();
    }
  });

  it('refuses nothing when requests are over target but the loop is mostly idle; shows why in GET /v1/admin/load', async () => {
    const { api } = idle!;
    const statuses = await trickle(api, 3000);
    assert.equal(statuses[503] ?? 0, 0, `nothing refused: ${JSON.stringify(statuses)}`);
    assert.ok((statuses[202] ?? 0) > 20, 'enough samples for the low class to be judged');
    const load = await json(await fetch(`${api.url}/v1/admin/load`, { headers: { authorization: `Bearer ${api.adminKey}` } }));
    assert.equal(load.targets.busyLoopPercent, 80);
    assert.ok(load.signals.loopUtilization >= 0 && load.signals.loopUtilization < 0.8, `loop utilisation ${load.signals.loopUtilization}`);
    assert.ok(load.controller.classPressure.low > 1, 'low is over its target, and shown so');
    assert.equal(load.controller.latencyCounted, false);
    assert.equal(load.controller.level, 0);
  });

  it('with SHED_BUSY_LOOP_PERCENT=0 the same trickle is shed, as latency alone says', async () => {
    const { api } = always!;
    const statuses = await trickle(api, 3000);
    assert.ok((statuses[503] ?? 0) > 0, `low refused: ${JSON.stringify(statuses)}`);
    const load = await json(await fetch(`${api.url}/v1/admin/load`, { headers: { authorization: `Bearer ${api.adminKey}` } }));
    assert.equal(load.controller.latencyCounted, true);
  });
});
