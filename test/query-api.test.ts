import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createApiKey } from '../lib/api-keys.js';
import { foldRollups, rollUp } from '../lib/rollup-maintenance.js';
import { writeEvents } from './rollup-support.js';
import { createTestEnv, json, startTestApi, type TestApi, type TestEnv } from './support.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
// Seven types, so that group_by=type over a day at one-minute steps exceeds the default 10000 points.
const TYPES = ['order.paid', 'order.refunded', 'orders', 'page.view', 'a_b', 'aXb'];

const UNIT = { m: MINUTE, h: HOUR, d: 24 * HOUR } as const;
const parseWindow = (text: string) => Number(text.slice(0, -1)) * UNIT[text.slice(-1) as keyof typeof UNIT];

interface Expected {
  count: number;
  valueCount: number;
  sum: number;
  min: number | null;
  max: number | null;
}

describe('query API', () => {
  let env: TestEnv;
  let api: TestApi;
  let tight: TestApi;
  let readKey: string;
  let otherReadKey: string;
  let tightKey: string;
  let ids: string[];
  let tieIds: string[];
  const now = Date.now();
  const tieAt = new Date(now - 30 * MINUTE).toISOString();

  before(async () => {
    env = await createTestEnv();
    api = await startTestApi(env);
    // A second API with small limits and a short query timeout.
    tight = await startTestApi(env, { statsMaxBuckets: 10, statsMaxPoints: 20, queryTimeoutMs: 300 });
    readKey = (await createApiKey(env.pool, { tenant: 'acme', scopes: ['read'] })).key;
    otherReadKey = (await createApiKey(env.pool, { tenant: 'globex', scopes: ['read'] })).key;
    tightKey = readKey;
    // 600 events over the last 50 hours; values are multiples of 0.25 (exact sums), a third have none.
    ids = await writeEvents(
      env,
      'acme',
      Array.from({ length: 600 }, (_, i) => ({
        type: TYPES[i % TYPES.length],
        timestamp: new Date(now - 60_000 - i * 5 * MINUTE - (i % 7) * 1000).toISOString(),
        source: i % 2 ? 'web' : 'ios',
        ...(i % 3 ? { value: ((i * 37) % 400) / 4 - 25 } : {}),
      })),
    );
    // 250 events sharing one timestamp, to page through ties; some with idempotency keys.
    tieIds = await writeEvents(
      env,
      'acme',
      Array.from({ length: 250 }, (_, i) => ({
        type: 'tie',
        timestamp: tieAt,
        source: i % 5 ? 'web' : 'cron',
        ...(i % 10 ? {} : { idempotency_key: `tie-${i}` }),
      })),
    );
    await writeEvents(
      env,
      'globex',
      Array.from({ length: 50 }, (_, i) => ({ type: 'order.paid', value: i, timestamp: new Date(now - i * MINUTE).toISOString() })),
    );
  });
  after(async () => {
    await tight?.close();
    await api?.close();
    await env?.cleanup();
  });

  const get = (path: string, key: string | null = readKey, base = api.url) =>
    fetch(`${base}${path}`, { headers: key ? { authorization: `Bearer ${key}` } : {} });

  /** The same question asked of events directly: every bucket of [from, to) at `stepMs`, per type if grouped. */
  async function fromEvents(
    tenant: string,
    from: string,
    to: string,
    stepMs: number,
    type: { exact?: string; prefix?: string },
    grouped: boolean,
  ) {
    const filter = type.exact ? 'AND type = $4' : type.prefix ? 'AND starts_with(type, $4)' : 'AND $4::text IS NULL';
    const { rows } = await env.pool.query<{
      t: Date;
      g: string;
      count: string;
      value_count: string;
      sum: number;
      min: number | null;
      max: number | null;
    }>(
      `SELECT date_bin(make_interval(secs => $5), occurred_at, 'epoch') AS t, ${grouped ? 'type' : "''"} AS g, count(*) AS count, count(value) AS value_count,
              coalesce(sum(value), 0) AS sum, min(value) AS min, max(value) AS max
       FROM events WHERE tenant = $1 AND occurred_at >= $2 AND occurred_at < $3 ${filter} GROUP BY 1, 2`,
      [tenant, from, to, type.exact ?? type.prefix ?? null, stepMs / 1000],
    );
    const out = new Map<string, Map<string, Expected>>();
    for (const r of rows) {
      if (!out.has(r.g)) out.set(r.g, new Map());
      out
        .get(r.g)!
        .set(r.t.toISOString(), { count: Number(r.count), valueCount: Number(r.value_count), sum: r.sum, min: r.min, max: r.max });
    }
    return out;
  }

  const cases = [
    {
      query: 'window=24h&step=5m&group_by=type&agg=count,sum,avg,min,max',
      stepMs: 5 * MINUTE,
      resolution: '5m',
      type: {},
      grouped: true,
    },
    {
      query: 'window=3d&step=1h&type=order.*&group_by=type&agg=count,sum,min,max',
      stepMs: HOUR,
      resolution: 'hour',
      type: { prefix: 'order.' },
      grouped: true,
    },
    { query: 'window=3d&step=1d&agg=count,avg', stepMs: 24 * HOUR, resolution: 'day', type: {}, grouped: false },
    {
      query: 'window=48h&step=90m&type=order.paid&agg=count,avg,max',
      stepMs: 90 * MINUTE,
      resolution: '5m',
      type: { exact: 'order.paid' },
      grouped: false,
    },
    { query: 'window=2h&type=a_*&group_by=type', stepMs: MINUTE, resolution: 'minute', type: { prefix: 'a_' }, grouped: true },
    { query: 'window=6h&step=7m&agg=sum,count', stepMs: 7 * MINUTE, resolution: 'minute', type: {}, grouped: false },
    { query: 'window=7d&step=6h&type=aXb', stepMs: 6 * HOUR, resolution: 'hour', type: { exact: 'aXb' }, grouped: false },
  ];
  type Case = (typeof cases)[number];

  /** Asks `c` of the API (as `key`, of `tenant`) and asserts the answer equals the same aggregate over events. */
  async function assertAnswersFromEvents(c: Case, tenant = 'acme', key = readKey, base = api.url) {
    const asked = Date.now();
    const res = await get(`/v1/stats?${c.query}`, key, base);
    const answered = Date.now();
    assert.equal(res.status, 200, await res.clone().text());
    const body = await json(res);
    assert.equal(body.resolution, c.resolution);
    const from = Date.parse(body.from);
    const to = Date.parse(body.to);
    assert.equal(from % c.stepMs, 0, 'buckets start on step boundaries');
    assert.equal((to - from) % c.stepMs, 0);
    assert.ok(to > asked && from <= answered - parseWindow(body.window), 'the range covers the window up to now');
    const expected = await fromEvents(tenant, body.from, body.to, c.stepMs, c.type, c.grouped);
    const groups = c.grouped ? [...expected.keys()].sort() : [''];
    assert.deepEqual(
      body.series.map((s: { type?: string }) => s.type ?? ''),
      groups,
      'one series per group holding events (one series without group_by)',
    );
    for (const series of body.series) {
      assert.equal(series.points.length, (to - from) / c.stepMs, 'every bucket is present');
      const want = expected.get(series.type ?? '') ?? new Map<string, Expected>();
      for (const p of series.points) {
        const e = want.get(p.t);
        assert.equal(p.count, e?.count ?? 0, `${series.type ?? 'all'} ${p.t} count`);
        if ('sum' in p) assert.equal(p.sum, e?.sum ?? 0);
        if ('min' in p) assert.equal(p.min, e?.min ?? null);
        if ('max' in p) assert.equal(p.max, e?.max ?? null);
        if ('avg' in p) assert.equal(p.avg, e && e.valueCount > 0 ? e.sum / e.valueCount : null);
        assert.deepEqual(
          Object.keys(p),
          ['t', ...(c.query.match(/agg=([a-z,]+)/)?.[1]!.split(',') ?? ['count'])],
          'the aggregates asked for, in order',
        );
      }
      const total = series.points.reduce((n: number, p: { count: number }) => n + p.count, 0);
      assert.equal(
        total,
        [...want.values()].reduce((n, e) => n + e.count, 0),
        'no event counted outside its bucket',
      );
    }
    return body;
  }

  for (const c of cases) {
    it(`GET /v1/stats?${c.query} equals the same aggregate over events (${c.resolution} rollups)`, async () => {
      await assertAnswersFromEvents(c);
    });
  }

  it('stays equal to events after a fold and a roll-up, with late events below the watermark, and with events past it', async () => {
    await rollUp(env.pool, 0);
    for (const c of cases) await assertAnswersFromEvents(c);
    // Late events (two days and five hours old, below the watermark) and new ones (above it), not rolled up yet.
    await writeEvents(env, 'acme', [
      { type: 'late.one', value: 4.5, timestamp: new Date(now - 2 * 24 * HOUR).toISOString() },
      { type: 'late.two', value: -2, timestamp: new Date(now - 5 * HOUR - 17 * MINUTE).toISOString() },
      { type: 'fresh.one', timestamp: new Date(Date.now()).toISOString() },
    ]);
    // Their minute deltas pending, then folded into the minute rows (the late ones' buckets still stale), then rolled up.
    for (const c of cases) await assertAnswersFromEvents(c);
    await foldRollups(env.pool);
    for (const c of cases) await assertAnswersFromEvents(c);
    await rollUp(env.pool, 0);
    for (const c of cases) await assertAnswersFromEvents(c);
  });

  it('shares one read among identical questions asked at once, never across tenants, and never reuses one read later by default', async () => {
    const c = cases[0]!;
    const [acme, globex] = await Promise.all([
      Promise.all(Array.from({ length: 8 }, () => get(`/v1/stats?${c.query}`).then((r) => r.text()))),
      Promise.all(Array.from({ length: 8 }, () => get(`/v1/stats?${c.query}`, otherReadKey).then((r) => r.text()))),
    ]);
    assert.notEqual(acme[0], globex[0], "each tenant's answer is its own");
    await assertAnswersFromEvents(c, 'acme');
    await assertAnswersFromEvents(c, 'globex', otherReadKey);
    // With STATS_CACHE_MS at 0 an event committed before a request is in its answer, however recent the last read.
    const before = await json(await get('/v1/stats?window=1h&step=1h&type=fresh.two'));
    await writeEvents(env, 'acme', [{ type: 'fresh.two', timestamp: new Date().toISOString() }]);
    const afterWrite = await json(await get('/v1/stats?window=1h&step=1h&type=fresh.two'));
    const total = (body: { series: { points: { count: number }[] }[] }) => body.series[0]!.points.reduce((n, p) => n + p.count, 0);
    assert.equal(total(afterWrite), total(before) + 1);
  });

  it('with STATS_CACHE_MS reuses an answer within the tenant only', async () => {
    const cached = await startTestApi(env, { statsCacheMs: 60_000 });
    try {
      const c = cases[0]!;
      const first = await get(`/v1/stats?${c.query}`, readKey, cached.url).then((r) => r.text());
      await writeEvents(env, 'acme', [{ type: 'fresh.three', timestamp: new Date().toISOString() }]);
      assert.equal(await get(`/v1/stats?${c.query}`, readKey, cached.url).then((r) => r.text()), first, 'reused within STATS_CACHE_MS');
      // Another tenant asking the very same question reads its own numbers.
      await assertAnswersFromEvents(c, 'globex', otherReadKey, cached.url);
      await assertAnswersFromEvents(c, 'acme', readKey, api.url);
    } finally {
      await cached.close();
    }
  });

  it("reports the newest minute holding a committed event, and only the tenant's own events", async () => {
    const { rows } = await env.pool.query<{ newest: Date }>(
      "SELECT max(date_bin('1 minute', occurred_at, 'epoch')) AS newest FROM events WHERE tenant = 'acme' AND occurred_at <= now()",
    );
    const body = await json(await get('/v1/stats?window=1h&step=1h&type=order.paid'));
    assert.equal(body.newest_minute, rows[0]!.newest.toISOString());
    const other = await json(await get('/v1/stats?window=1h&step=1h&type=order.paid', otherReadKey));
    assert.equal(
      other.series[0].points.reduce((n: number, p: { count: number }) => n + p.count, 0),
      50 - (await countOlder('globex', Date.parse(other.from))),
    );
    assert.notEqual(other.newest_minute, null);
  });

  async function countOlder(tenant: string, before: number): Promise<number> {
    const { rows } = await env.pool.query<{ n: string }>('SELECT count(*) AS n FROM events WHERE tenant = $1 AND occurred_at < $2', [
      tenant,
      new Date(before),
    ]);
    return Number(rows[0]!.n);
  }

  it('pages through events sharing one timestamp without skipping or repeating any, in both orders', async () => {
    for (const order of ['desc', 'asc'] as const) {
      const { rows } = await env.pool.query<{ id: string }>(
        `SELECT id FROM events WHERE tenant = 'acme' AND type = 'tie' ORDER BY occurred_at ${order}, id ${order}`,
      );
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const res = await get(`/v1/events?type=tie&limit=7&order=${order}${cursor ? `&cursor=${cursor}` : ''}`);
        assert.equal(res.status, 200);
        const page = await json(res);
        assert.ok(page.events.length <= 7);
        for (const e of page.events) assert.equal(e.timestamp, tieAt);
        seen.push(...page.events.map((e: { id: string }) => e.id));
        cursor = page.next_cursor;
        pages++;
      } while (cursor);
      assert.deepEqual(
        seen,
        rows.map((r) => r.id),
        `${order}: every tied event once, in (occurred_at, id) order`,
      );
      assert.equal(pages, Math.ceil(250 / 7));
      assert.deepEqual(new Set(seen), new Set(tieIds));
    }
  });

  it('filters events by type prefix, source, idempotency key and time range', async () => {
    const all = async (query: string) => {
      const out: { id: string; type: string; source: string; timestamp: string; idempotency_key: string | null }[] = [];
      let cursor: string | null = null;
      do {
        const page = await json(await get(`/v1/events?${query}&limit=1000${cursor ? `&cursor=${cursor}` : ''}`));
        out.push(...page.events);
        cursor = page.next_cursor;
      } while (cursor);
      return out;
    };
    const orders = await all('type=order.*');
    assert.equal(orders.length, 200);
    assert.ok(orders.every((e) => e.type.startsWith('order.')));
    const underscore = await all('type=a_*');
    assert.deepEqual([...new Set(underscore.map((e) => e.type))], ['a_b'], '_ is not a wildcard');
    assert.equal((await all('type=tie&source=cron')).length, 50);
    const keyed = await all('idempotency_key=tie-20');
    assert.deepEqual(
      keyed.map((e) => e.idempotency_key),
      ['tie-20'],
    );
    const since = new Date(now - 2 * HOUR).toISOString();
    const until = new Date(now - HOUR).toISOString();
    const range = await all(`since=${since}&until=${until}`);
    assert.ok(range.length > 0 && range.every((e) => e.timestamp >= since && e.timestamp < until));
    const { rows } = await env.pool.query<{ n: string }>(
      "SELECT count(*) AS n FROM events WHERE tenant = 'acme' AND occurred_at >= $1 AND occurred_at < $2",
      [since, until],
    );
    assert.equal(range.length, Number(rows[0]!.n));
  });

  it("GET /v1/events/{id} returns the tenant's event and nothing of another tenant", async () => {
    const id = ids[3]!;
    const res = await get(`/v1/events/${id}`);
    assert.equal(res.status, 200);
    const event = await json(res);
    assert.equal(event.id, id);
    assert.equal(event.type, TYPES[3]);
    assert.equal(event.source, 'web');
    assert.equal(event.priority, 'normal');
    const other = await get(`/v1/events/${id}`, otherReadKey);
    assert.equal(other.status, 404);
    assert.equal((await json(other)).error, 'event_not_found');
  });

  it('needs a key with the read scope: 401 without a key, 403 forbidden for ingest or admin keys', async () => {
    for (const path of ['/v1/stats', '/v1/events', `/v1/events/${ids[0]}`]) {
      assert.equal((await get(path, null)).status, 401, path);
      for (const key of [api.key, api.adminKey]) {
        const res = await get(path, key);
        assert.equal(res.status, 403, path);
        assert.equal((await json(res)).error, 'forbidden');
      }
    }
    const post = await fetch(`${api.url}/v1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${readKey}`, 'content-type': 'application/json' },
      body: '{"type":"x"}',
    });
    assert.equal(post.status, 403, 'a read key cannot ingest');
  });

  const badRequests: [path: string, code: string, parameter?: string][] = [
    ['/v1/stats?window=0m', 'invalid_parameter', 'window'],
    ['/v1/stats?window=31d', 'invalid_parameter', 'window'],
    ['/v1/stats?window=1w', 'invalid_parameter', 'window'],
    ['/v1/stats?window=24h&step=30s', 'invalid_parameter', 'step'],
    ['/v1/stats?window=1h&step=2h', 'invalid_parameter', 'step'],
    ['/v1/stats?type=bad%20type', 'invalid_parameter', 'type'],
    ['/v1/stats?type=order.*.paid', 'invalid_parameter', 'type'],
    ['/v1/stats?group_by=source', 'invalid_parameter', 'group_by'],
    ['/v1/stats?agg=count,median', 'invalid_parameter', 'agg'],
    ['/v1/stats?agg=count,count', 'invalid_parameter', 'agg'],
    ['/v1/stats?grup_by=type', 'invalid_parameter', 'grup_by'],
    ['/v1/stats?window=1h&window=2h', 'invalid_parameter', 'window'],
    ['/v1/stats?window=30d&step=1m', 'too_many_buckets'],
    ['/v1/stats?window=24h&step=1m&group_by=type', 'too_many_points'],
    ['/v1/events?limit=0', 'invalid_parameter', 'limit'],
    ['/v1/events?limit=1001', 'invalid_parameter', 'limit'],
    ['/v1/events?limit=ten', 'invalid_parameter', 'limit'],
    ['/v1/events?since=yesterday', 'invalid_parameter', 'since'],
    ['/v1/events?since=2024-05-02T00:00:00Z&until=2024-05-01T00:00:00Z', 'invalid_parameter', 'since'],
    ['/v1/events?order=sideways', 'invalid_parameter', 'order'],
    ['/v1/events?source=', 'invalid_parameter', 'source'],
    ['/v1/events?source=a%00b', 'invalid_parameter', 'source'],
    ['/v1/events?cursor=not-a-cursor', 'invalid_cursor'],
    ['/v1/events?offset=100', 'invalid_parameter', 'offset'],
    ['/v1/events/not-a-uuid', 'not_found'],
    ['/v1/events/01890a5d-ac96-774b-bcce-b302099a8057', 'event_not_found'],
  ];
  it('answers every bad parameter with its status and stable code, naming the parameter (a path that is no event id is no route)', async () => {
    for (const [path, code, parameter] of badRequests) {
      const res = await get(path);
      const body = await json(res);
      assert.equal(body.error, code, `${path}: ${JSON.stringify(body)}`);
      assert.equal(res.status, code === 'too_many_points' ? 422 : code.endsWith('not_found') ? 404 : 400, path);
      if (parameter) assert.equal(body.details.parameter, parameter, path);
    }
  });

  it('refuses a cursor read in the other order', async () => {
    const page = await json(await get('/v1/events?type=tie&limit=5'));
    const res = await get(`/v1/events?type=tie&limit=5&order=asc&cursor=${page.next_cursor}`);
    assert.equal(res.status, 400);
    assert.equal((await json(res)).error, 'invalid_cursor');
  });

  it('enforces STATS_MAX_BUCKETS and STATS_MAX_POINTS as configured', async () => {
    const buckets = await get('/v1/stats?window=1h&step=5m', tightKey, tight.url);
    assert.equal(buckets.status, 400);
    assert.deepEqual((await json(buckets)).details, { buckets: 13, max_buckets: 10 });
    const points = await get('/v1/stats?window=30m&step=5m&group_by=type', tightKey, tight.url);
    assert.equal(points.status, 422);
    assert.equal((await json(points)).error, 'too_many_points');
    assert.equal((await get('/v1/stats?window=30m&step=5m', tightKey, tight.url)).status, 200, 'one series of 7 buckets fits');
  });

  it('cancels a query that runs past QUERY_TIMEOUT_MS: 503 query_timeout', async () => {
    const lock = await env.pool.connect();
    try {
      await lock.query('BEGIN');
      await lock.query('LOCK TABLE rollup_minute IN ACCESS EXCLUSIVE MODE');
      const res = await get('/v1/stats?window=1h&step=15m', tightKey, tight.url);
      assert.equal(res.status, 503);
      assert.equal((await json(res)).error, 'query_timeout');
    } finally {
      await lock.query('ROLLBACK');
      lock.release();
    }
    assert.equal((await get('/v1/stats?window=1h&step=15m', tightKey, tight.url)).status, 200);
  });

  it('leaves GET /v1/events/live to the live view', async () => {
    const abort = new AbortController();
    const res = await fetch(`${api.url}/v1/events/live`, {
      headers: { authorization: `Bearer ${readKey}`, accept: 'text/event-stream' },
      signal: abort.signal,
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
    abort.abort();
    await res.body?.cancel().catch(() => {});
  });

  it('documents the query routes in the OpenAPI document', async () => {
    const doc = await json(await fetch(`${api.url}/openapi.json`));
    assert.ok(doc.paths['/v1/stats'].get);
    assert.ok(doc.paths['/v1/events'].get && doc.paths['/v1/events'].post);
    assert.ok(doc.paths['/v1/events/{id}'].get);
    assert.match(JSON.stringify(doc.paths['/v1/stats'].get.responses['422']), /too_many_points/);
    assert.match(JSON.stringify(doc.paths['/v1/events/{id}'].get.responses['404']), /event_not_found/);
    assert.doesNotMatch(
      JSON.stringify(doc.paths['/v1/events'].post),
      /invalid_cursor|too_many_points/,
      "ingest does not list the query API's codes",
    );
  });
});
