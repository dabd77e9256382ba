import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApiKey } from '../lib/api-keys.js';
import { foldRollups, rollUp, rollupWatermark } from '../lib/rollup-maintenance.js';
import { planStats, readStats, type StatsRequest } from '../lib/stats-query.js';
import { COLUMNS_TYPE } from '../lib/stats-render.js';
import { writeEvents } from './rollup-support.js';
import { createTestEnv, json, startTestApi, type TestApi, type TestEnv } from './support.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

interface Point {
  t: string;
  count: number;
  sum: number;
  min: number | null;
  max: number | null;
}

// The API keeps the rolled-up past of each question (below the roll-up watermark) and reads only the minutes past
// it: these tests check that every answer still holds every event committed before its request, whatever the
// roll-up, late events and the watermark did in between.
describe('stats: the rolled-up past kept between reads', () => {
  let env: TestEnv;
  let api: TestApi;
  let key: string;
  const tenant = 'initech';
  const QUESTIONS = [
    { query: 'window=24h&step=5m&group_by=type&agg=count,sum,min,max', stepMs: 5 * MINUTE },
    { query: 'window=3h&step=1m&group_by=type&agg=count,sum,min,max', stepMs: MINUTE },
    { query: 'window=2d&step=1h&agg=count,sum,min,max', stepMs: HOUR },
  ];

  before(async () => {
    env = await createTestEnv();
    api = await startTestApi(env);
    key = (await createApiKey(env.pool, { tenant, scopes: ['read'] })).key;
  });
  after(async () => {
    await api?.close();
    await env?.cleanup();
  });

  const ask = (query: string, headers: Record<string, string> = {}) =>
    fetch(`${api.url}/v1/stats?${query}`, { headers: { authorization: `Bearer ${key}`, ...headers } });

  /** Asks `q` and asserts every point equals the same aggregate over the events stored (values add up exactly). */
  async function assertExact(q: (typeof QUESTIONS)[number], what: string) {
    const res = await ask(q.query);
    assert.equal(res.status, 200);
    const body = await json(res);
    const { rows } = await env.pool.query<{ t: Date; g: string; count: string; sum: number; min: number | null; max: number | null }>(
      `SELECT date_bin(make_interval(secs => $4), occurred_at, 'epoch') AS t, ${body.group_by ? 'type' : "''"} AS g,
              count(*) AS count, coalesce(sum(value), 0) AS sum, min(value) AS min, max(value) AS max
       FROM events WHERE tenant = $1 AND occurred_at >= $2 AND occurred_at < $3 GROUP BY 1, 2`,
      [tenant, body.from, body.to, q.stepMs / 1000],
    );
    const expected = new Map(rows.map((r) => [`${r.g}|${r.t.toISOString()}`, r]));
    let seen = 0;
    for (const s of body.series as { type?: string; points: Point[] }[]) {
      for (const p of s.points) {
        const e = expected.get(`${s.type ?? ''}|${p.t}`);
        if (e) seen++;
        assert.deepEqual(
          [p.count, p.sum, p.min, p.max],
          e ? [Number(e.count), e.sum, e.min, e.max] : [0, 0, null, null],
          `${what}: ${q.query} ${s.type ?? ''} ${p.t}`,
        );
      }
    }
    assert.equal(seen, rows.length, `${what}: ${q.query}: every bucket holding events is in the answer`);
  }

  const event = (type: string, at: number, value: number) => ({ type, timestamp: new Date(at).toISOString(), value });

  it('a roll-up that recomputes a late event without moving the watermark invalidates what was kept', async () => {
    const minute = Math.floor((Date.now() - 3 * HOUR - 7 * MINUTE) / MINUTE) * MINUTE;
    await writeEvents(env, tenant, [event('late.a', minute + 1000, 1), event('late.a', minute + 2000, 2)]);
    await rollUp(env.pool, 0);
    for (const q of QUESTIONS) await assertExact(q, 'after the roll-up');
    const watermark = await rollupWatermark(env.pool);
    // A late event into the rolled-up minute, then a pass that recomputes its buckets but keeps the watermark: the
    // stale minutes are what they were when the answers above were kept; only the coarse rows hold the event now.
    await writeEvents(env, tenant, [event('late.a', minute + 3000, 100)]);
    const pass = await rollUp(env.pool, 2 * HOUR);
    assert.equal(pass.staleMinutes, 1);
    assert.equal(pass.watermark.getTime(), watermark.getTime(), 'the watermark did not move');
    for (const q of QUESTIONS) await assertExact(q, 'after the late event was rolled up');
  });

  it('holds every event committed before each request through writes, late events, folds and roll-ups in any order', async () => {
    let seed = 7;
    const random = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
    const types = ['k.one', 'k.two', 'k.three'];
    for (let step = 0; step < 40; step++) {
      const action = Math.floor(random() * 6);
      const value = Math.floor(random() * 400) / 4 - 50;
      const type = types[Math.floor(random() * types.length)]!;
      if (action === 0) await writeEvents(env, tenant, [event(type, Date.now() - Math.floor(random() * 2 * MINUTE), value)]);
      else if (action === 1) await writeEvents(env, tenant, [event(type, Date.now() - Math.floor(random() * 20 * HOUR), value)]);
      else if (action === 2) await rollUp(env.pool, 0);
      else if (action === 3) await rollUp(env.pool, 2 * HOUR);
      else if (action === 4) await foldRollups(env.pool);
      else await rollUp(env.pool, Math.floor(random() * 3) * MINUTE);
      // Not every question after every step: some keep their past across several changes.
      for (const q of QUESTIONS) if (random() < 0.6) await assertExact(q, `step ${step} (action ${action})`);
    }
    for (const q of QUESTIONS) await assertExact(q, 'at the end');
  });

  it('reads the rolled-up past only when its token no longer holds', async () => {
    const request: StatsRequest = { tenant, windowMs: 24 * HOUR, stepMs: 5 * MINUTE, type: null, groupBy: 'type', aggregates: ['count'] };
    const now = Date.now();
    const plan = planStats(request, now);
    const options = { now, retentionDays: env.config.retentionDays, maxPoints: env.config.statsMaxPoints };
    await writeEvents(env, tenant, [event('k.past', Date.now() - 6 * HOUR, 1)]);
    await rollUp(env.pool, 0);
    const first = await readStats(env.pool, request, plan, options);
    assert.ok(first.base && first.base.cells > 0, 'a read without a token returns the rolled-up past');
    const again = await readStats(env.pool, request, plan, options, first.token);
    assert.equal(again.base, null, 'nothing changed: the kept past holds');
    await writeEvents(env, tenant, [event('k.recent', Date.now(), 1)]);
    assert.equal((await readStats(env.pool, request, plan, options, first.token)).base, null, 'an event past the watermark is live');
    await writeEvents(env, tenant, [event('k.late', Date.now() - 5 * HOUR, 1)]);
    const late = await readStats(env.pool, request, plan, options, first.token);
    assert.notEqual(late.base, null, 'a late event marks its minute stale: the token changes');
    await rollUp(env.pool, 2 * HOUR);
    assert.notEqual((await readStats(env.pool, request, plan, options, late.token)).base, null, 'the roll-up recomputed it');
  });

  it('answers in the columns encoding when asked, and gzipped when the client accepts it, with the same numbers', async () => {
    const q = QUESTIONS[0]!.query;
    const plain = await ask(q, { 'accept-encoding': 'identity' });
    assert.equal(plain.headers.get('content-type'), 'application/json; charset=utf-8');
    assert.equal(plain.headers.get('content-encoding'), null);
    const body = await json(plain);
    const packed = await ask(q, { 'accept-encoding': 'gzip' });
    assert.equal(packed.headers.get('content-encoding'), 'gzip');
    assert.match(packed.headers.get('vary') ?? '', /Accept-Encoding/);
    assert.deepEqual(await json(packed), body, 'fetch inflates it to the same answer');
    const columns = await ask(q, { accept: COLUMNS_TYPE, 'accept-encoding': 'identity' });
    assert.equal(columns.headers.get('content-type'), COLUMNS_TYPE);
    const table = await json(columns);
    assert.deepEqual(
      { ...table, series: undefined },
      { ...body, series: undefined },
      'the same window, step, range, freshness and aggregates',
    );
    const stepMs = 5 * MINUTE;
    assert.deepEqual(
      table.series.map((s: { type: string; count: number[]; sum: number[]; min: (number | null)[]; max: (number | null)[] }) => ({
        type: s.type,
        points: s.count.map((count, i) => ({
          t: new Date(Date.parse(table.from) + i * stepMs).toISOString(),
          count,
          sum: s.sum[i],
          min: s.min[i],
          max: s.max[i],
        })),
      })),
      body.series,
      'bucket i of each column is point i of the JSON answer',
    );
    assert.ok(Number(columns.headers.get('content-length')) * 5 < Number(plain.headers.get('content-length')), 'columns are much smaller');
  });
});
