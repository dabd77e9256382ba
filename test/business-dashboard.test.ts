import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { allSqlQueries, sqlDashboards, type SqlDashboardQuery } from '../grafana/generate.js';
import { expandSql, type SqlContext } from '../grafana/sql.js';
import { createTestEnv, type TestEnv } from './support.js';

/**
 * Every query of the Business events dashboard (its panels and its variables) run against a real PostgreSQL
 * holding rollup rows, the way Grafana's PostgreSQL data source sends it (macros and variables expanded), with
 * the answers checked against what the rows say.
 */

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

interface Row {
  tenant: string;
  type: string;
  bucket: Date;
  events: number;
  values: number[];
}

const floor = (at: number, width: number) => new Date(Math.floor(at / width) * width);

describe('Business events dashboard against PostgreSQL', () => {
  let env: TestEnv;
  const now = Date.now();
  // Three minutes of acme traffic ending two minutes ago, an older hour, and another tenant that must never show.
  const recent = floor(now - 2 * MINUTE, MINUTE).getTime();
  const minutes: Row[] = [
    { tenant: 'acme', type: 'order.created', bucket: new Date(recent - 2 * MINUTE), events: 3, values: [10, 20, 30] },
    { tenant: 'acme', type: 'order.created', bucket: new Date(recent - MINUTE), events: 2, values: [5, 7] },
    { tenant: 'acme', type: 'page.view', bucket: new Date(recent - MINUTE), events: 40, values: [] },
    { tenant: 'acme', type: 'page.view', bucket: new Date(recent), events: 20, values: [] },
    { tenant: 'acme', type: 'order.created', bucket: new Date(recent - 3 * DAY), events: 1, values: [100] },
    { tenant: 'globex', type: 'secret.globex', bucket: new Date(recent - MINUTE), events: 999, values: [1] },
  ];

  async function insert(table: string, width: number): Promise<void> {
    const groups = new Map<string, Row>();
    for (const row of minutes) {
      const bucket = floor(row.bucket.getTime(), width);
      const key = `${row.tenant}|${row.type}|${bucket.toISOString()}`;
      const group = groups.get(key) ?? { ...row, bucket, events: 0, values: [] };
      group.events += row.events;
      group.values = [...group.values, ...row.values];
      groups.set(key, group);
    }
    for (const g of groups.values()) {
      const v = g.values;
      await env.pool.query(
        `INSERT INTO ${table} (tenant, type, bucket, event_count, value_count, value_sum, value_min, value_max) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
        [
          g.tenant,
          g.type,
          g.bucket,
          g.events,
          v.length,
          v.reduce((a, b) => a + b, 0),
          v.length ? Math.min(...v) : null,
          v.length ? Math.max(...v) : null,
        ],
      );
    }
  }

  before(async () => {
    env = await createTestEnv();
    // The rollup tables come with the rollups' migration; where it is not applied (yet), the test creates them as
    // the dashboard's contract describes them.
    const { rows } = await env.pool.query<{ missing: boolean }>("SELECT to_regclass('rollup_minute') IS NULL AS missing");
    if (rows[0]!.missing) {
      for (const table of ['rollup_minute', 'rollup_hour', 'rollup_day']) {
        await env.pool
          .query(`CREATE TABLE ${table} (tenant text NOT NULL, type text NOT NULL, bucket timestamptz NOT NULL, event_count bigint NOT NULL,
          value_count bigint NOT NULL, value_sum double precision NOT NULL, value_min double precision, value_max double precision, PRIMARY KEY (tenant, bucket, type))`);
      }
    }
    // Minute rollups may be partitioned by day like events: make the days the rows fall on.
    await env.pool.query('SELECT floodgate_create_partitions(current_date - 4, current_date)');
    await insert('rollup_minute', MINUTE);
    await insert('rollup_hour', HOUR);
    await insert('rollup_day', DAY);
  });
  after(async () => {
    await env?.cleanup();
  });

  const queries = () => allSqlQueries();
  const find = (panel: string): SqlDashboardQuery => {
    const query = queries().find((q) => q.panel === panel);
    assert.ok(query, `no query for ${panel}`);
    return query;
  };
  const context = (rangeMs: number, variables: Record<string, string[]> = {}): SqlContext => ({
    from: new Date(now - rangeMs),
    to: new Date(now),
    variables: { tenant: ['acme'], type: ['order.created', 'page.view'], ...variables },
  });
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const run = async (query: SqlDashboardQuery, ctx: SqlContext): Promise<any[]> => (await env.pool.query(expandSql(query.sql, ctx))).rows;

  it('is one dashboard with a datasource, tenant and type variables, and a query per panel', () => {
    assert.deepEqual(
      sqlDashboards().map((d) => d.file),
      ['business-events.json'],
    );
    assert.deepEqual(
      queries().map((q) => q.panel),
      [
        '$tenant',
        '$type',
        'Events in range',
        'Value sum in range',
        'Types in range',
        'Freshness',
        'Events per minute by type',
        'Value sum per minute by type',
        'Top types in range',
      ],
    );
  });

  it('every query runs at each rollup level (minutes, hours, days)', async () => {
    for (const range of [HOUR, 7 * DAY, 90 * DAY]) {
      for (const query of queries()) {
        await assert.doesNotReject(run(query, context(range)), `${query.panel} over ${range / HOUR} h`);
      }
    }
  });

  it('lists the tenants of the range, and the types of the chosen tenants', async () => {
    assert.deepEqual(
      (await run(find('$tenant'), context(HOUR))).map((r) => r.tenant),
      ['acme', 'globex'],
    );
    assert.deepEqual(
      (await run(find('$type'), context(HOUR))).map((r) => r.type),
      ['order.created', 'page.view'],
    );
    assert.deepEqual(
      (await run(find('$type'), context(HOUR, { tenant: ['globex'] }))).map((r) => r.type),
      ['secret.globex'],
    );
  });

  it('counts the events and values of the chosen tenant and types only', async () => {
    assert.equal(Number((await run(find('Events in range'), context(HOUR)))[0].events), 65);
    assert.equal(Number((await run(find('Value sum in range'), context(HOUR)))[0]['value sum']), 72);
    assert.equal(Number((await run(find('Types in range'), context(HOUR)))[0].types), 2);
    assert.equal(Number((await run(find('Events in range'), context(HOUR, { type: ['page.view'] })))[0].events), 60);
    // Seven days: the hour rollups, which hold the order of three days ago too.
    assert.equal(Number((await run(find('Events in range'), context(7 * DAY)))[0].events), 66);
    assert.equal(Number((await run(find('Value sum in range'), context(90 * DAY)))[0]['value sum']), 172);
  });

  it('draws events per minute by type, scaled to a per-minute rate at every level', async () => {
    const points = await run(find('Events per minute by type'), context(HOUR));
    assert.deepEqual(
      points.map((p) => [p.time.getTime(), p.metric, Number(p.value)]),
      [
        [recent - 2 * MINUTE, 'order.created', 3],
        [recent - MINUTE, 'order.created', 2],
        [recent - MINUTE, 'page.view', 40],
        [recent, 'page.view', 20],
      ],
    );
    const hourly = await run(find('Events per minute by type'), context(7 * DAY));
    const total = hourly.filter((p) => p.metric === 'page.view').reduce((n, p) => n + Number(p.value) * 60, 0);
    assert.equal(Math.round(total), 60, 'per-minute rates of the hour buckets add up to the events');
  });

  it('draws value sums only for types that carry a value', async () => {
    const points = await run(find('Value sum per minute by type'), context(HOUR));
    assert.deepEqual(
      points.map((p) => [p.time.getTime(), p.metric, Number(p.value)]),
      [
        [recent - 2 * MINUTE, 'order.created', 60],
        [recent - MINUTE, 'order.created', 12],
      ],
    );
  });

  it('ranks the top types with their share and value statistics', async () => {
    const rows = await run(find('Top types in range'), context(HOUR));
    assert.deepEqual(
      rows.map((r) => [
        r.type,
        Number(r.events),
        Number(r['share %']),
        Number(r['with value']),
        r['value min'],
        r['value max'],
        r['value mean'],
      ]),
      [
        ['page.view', 60, 92.3, 0, null, null, null],
        ['order.created', 5, 7.7, 5, 5, 30, 72 / 5],
      ],
    );
  });

  it('tells how old the newest minute of the chosen tenants is', async () => {
    const [row] = await run(find('Freshness'), context(HOUR));
    const expected = (Date.now() - (recent + MINUTE)) / 1000;
    assert.ok(Math.abs(row['seconds since the newest minute'] - expected) < 5, `${row['seconds since the newest minute']} vs ${expected}`);
    const [none] = await run(find('Freshness'), context(HOUR, { tenant: ['nobody'] }));
    assert.equal(none['seconds since the newest minute'], null, 'a tenant without events in the last day has no freshness');
  });

  it('never shows another tenant, even with every type chosen', async () => {
    const ctx = context(HOUR, { type: ['order.created', 'page.view', 'secret.globex'] });
    assert.equal(Number((await run(find('Events in range'), ctx))[0].events), 65);
    const top = await run(find('Top types in range'), ctx);
    assert.ok(top.every((r) => r.type !== 'secret.globex'));
  });
});
