import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApiKey } from '../lib/api-keys.js';
import { countEvents, createTestEnv, eventually, json, startCluster, type TestCluster, type TestEnv } from './support.js';

describe('end to end: HTTP → cluster API → Redis → worker → Postgres', () => {
  let env: TestEnv;
  let cluster: TestCluster;
  let url: string;
  let metricsUrl: string;
  let key: string;
  before(async () => {
    env = await createTestEnv();
    cluster = await startCluster(env);
    ({ url, metricsUrl } = cluster);
    key = (await createApiKey(env.pool, { tenant: 'e2e' })).key;
  });
  after(async () => {
    await cluster?.stop();
    await env?.cleanup();
  });

  it('stores N accepted events as exactly N rows, duplicates by key once, with the ids it answered', async () => {
    const ids: string[] = [];
    const sends = Array.from({ length: 40 }, async (_, i) => {
      const body = { events: Array.from({ length: 25 }, (_, j) => ({ type: 'e2e', idempotency_key: `k-${i}-${j % 20}`, data: { i, j } })) };
      const res = await fetch(`${url}/v1/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body: JSON.stringify(body),
      });
      assert.equal(res.status, 202);
      ids.push(...(await json(res)).ids);
    });
    await Promise.all(sends);
    // A client retry of a whole request: every key is already stored.
    const retry = await fetch(`${url}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': key },
      body: JSON.stringify({ events: Array.from({ length: 20 }, (_, j) => ({ type: 'e2e', idempotency_key: `k-0-${j}` })) }),
    });
    assert.equal(retry.status, 202);
    assert.equal(ids.length, 1000);
    await eventually(
      async () => (await countEvents(env, 'e2e')) === 800 && (await env.redis.xlen(env.config.streamKey)) === 0,
      '800 distinct keys stored',
    );
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await countEvents(env, 'e2e'), 800, 'duplicates never arrive late');
    const { rows } = await env.pool.query<{ id: string }>("SELECT id FROM events WHERE tenant = 'e2e'");
    const answered = new Set(ids);
    assert.ok(
      rows.every((r) => answered.has(r.id)),
      'every stored id was answered to the client',
    );
  });

  it("answers one scrape with the whole cluster's numbers", async () => {
    const text = await (await fetch(metricsUrl)).text();
    const accepted = /^floodgate_events_accepted_total\{priority="normal",role="api"\} (\d+)/m.exec(text);
    assert.ok(accepted, 'accepted counter present');
    assert.equal(Number(accepted[1]), 1020, 'summed over both API processes');
  });

  it('stores data written with whitespace, escapes and any number notation as the same jsonb as its parsed value', async () => {
    const datas = [
      '{ "a" : [ 1 , 2.5 , -3 ] ,\n\t"s" : "\\u00e9 \u00e9 \\ud83d\\ude00 \ud83d\ude00 \\/ / tab\\there \\\\u0000" }',
      '{"n":1e3,"m":2.50,"z":-0,"big":12345678901234567890,"tiny":1E-7}',
      '{"2":"two","b":{"1":true,"a":null},"b":{"last":"wins"}}',
      '{"deep":[[[{"x":[{"y":"}]\\""}]}]]]}',
    ];
    const body = `{"events":[${datas.map((d, i) => `{"type":"e2e.data","source":"s${i}","data":${d}}`).join(',')}]}`;
    const res = await fetch(`${url}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body,
    });
    assert.equal(res.status, 202, JSON.stringify(await res.clone().json()));
    await eventually(
      async () => (await env.pool.query("SELECT 1 FROM events WHERE type = 'e2e.data'")).rowCount === datas.length,
      'stored',
    );
    for (const [i, data] of datas.entries()) {
      const reserialised = JSON.stringify(JSON.parse(data));
      const { rows } = await env.pool.query<{ same: boolean; data: unknown }>(
        "SELECT data = $1::jsonb AS same, data FROM events WHERE type = 'e2e.data' AND source = $2",
        [reserialised, `s${i}`],
      );
      assert.equal(rows[0]?.same, true, `${data} stored as ${JSON.stringify(rows[0]?.data)}`);
    }
  });
});
