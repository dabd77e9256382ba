// What the query API costs a reader over a few million events: stats from the rollups next to the same answer
// computed from events, event pages (first and deep, by cursor) and lookups by id, each with the partitions
// its plan reads.
import type { Pool } from '../lib/db.js';
import { checkEvent } from '../lib/event-schema.js';
import { writeEntries } from '../lib/pg-batch-write.js';
import { decodeEntry, encodeEntry } from '../lib/stream-entry.js';
import { getEvent, listEvents, listEventsQuery, type EventCursor, type EventFilter } from '../lib/event-query.js';
import { planStats, readStats, statsQuery, type StatsRequest } from '../lib/stats-query.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** One measured query: median latency, and the partitions its plan reads. */
export interface QueryFigure {
  readonly name: string;
  readonly medianMs: number;
  readonly p90Ms: number;
  readonly runs: number;
  readonly partitions: string;
}

const TYPES = ['page.view', 'button.click', 'checkout.started', 'checkout.completed', 'signup', 'search', 'order.paid', 'order.refunded'];

/**
 * Stores `events` events of `tenants` tenants spread evenly over the last `days` days (time-ordered ids like
 * UUIDv7, half with a value), then rebuilds their rollups (floodgate_rebuild_rollups, as migration 006 does):
 * the same rows the worker would have written. Returns how long the rebuild took and the rollup sizes.
 */
export async function fillEvents(
  pool: Pool,
  options: { events: number; tenants: number; days: number },
): Promise<{ rebuildSeconds: number; minuteRows: number; hourRows: number; dayRows: number }> {
  const { events, tenants, days } = options;
  await pool.query('TRUNCATE events, idempotency_keys, rollup_minute, rollup_pending, rollup_5m, rollup_hour, rollup_day, rollup_stale');
  const chunk = 250_000;
  for (let start = 0; start < events; start += chunk) {
    await pool.query(
      `INSERT INTO events (id, tenant, type, occurred_at, received_at, source, idempotency_key, priority, value, data)
       SELECT (lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0') || substr(md5(i::text), 1, 20))::uuid,
              'tenant-' || (i % $2), ($4::text[])[1 + (i / 7) % 8], at, at, (ARRAY['web', 'ios', 'android', 'backend', 'batch-import'])[1 + i % 5],
              CASE WHEN i % 10 = 0 THEN 'key-' || i END, 'normal', CASE WHEN i % 2 = 0 THEN (i % 1000) / 10.0 END,
              jsonb_build_object('user', 'u' || (i % 100000), 'seq', i)
       FROM (SELECT i, now() - ($3::float8 * 86400 * 1000 * i / $5) * interval '1 millisecond' AS at
             FROM generate_series($1::bigint, least($1::bigint + ${chunk} - 1, $5::bigint - 1)) i) g`,
      [start, tenants, days, TYPES, events],
    );
    console.error(`stats latency: ${Math.min(events, start + chunk)} of ${events} events stored`);
  }
  const started = performance.now();
  await pool.query(
    "SELECT floodgate_rebuild_rollups((now() - make_interval(days => $1::int + 1))::date, (now() + interval '1 day')::date)",
    [days],
  );
  const rebuildSeconds = (performance.now() - started) / 1000;
  await pool.query('VACUUM ANALYZE events, rollup_minute, rollup_5m, rollup_hour, rollup_day');
  const { rows } = await pool.query<{ minute: string; hour: string; day: string }>(
    'SELECT (SELECT count(*) FROM rollup_minute) AS minute, (SELECT count(*) FROM rollup_hour) AS hour, (SELECT count(*) FROM rollup_day) AS day',
  );
  return { rebuildSeconds, minuteRows: Number(rows[0]!.minute), hourRows: Number(rows[0]!.hour), dayRows: Number(rows[0]!.day) };
}

/** The leaf relations (partitions) of a statement's plan that Postgres may read. */
async function partitionsRead(pool: Pool, query: { text: string; values: unknown[] }): Promise<string> {
  const { rows } = await pool.query<{ 'QUERY PLAN': unknown }>({ text: `EXPLAIN (FORMAT JSON) ${query.text}`, values: query.values });
  const names = new Set<string>();
  const walk = (node: Record<string, unknown>) => {
    if (typeof node['Relation Name'] === 'string') names.add(node['Relation Name']);
    for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) walk(child);
  };
  walk((rows[0]!['QUERY PLAN'] as { Plan: Record<string, unknown> }[])[0]!.Plan);
  const byTable = new Map<string, number>();
  for (const name of names) {
    const table = name.replace(/_p\d{8}$/, '');
    byTable.set(table, (byTable.get(table) ?? 0) + 1);
  }
  return [...byTable].map(([table, n]) => `${table} ×${n}`).join(', ');
}

async function time(name: string, runs: number, run: () => Promise<unknown>, partitions: string): Promise<QueryFigure> {
  await run();
  const ms: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    await run();
    ms.push(performance.now() - started);
  }
  ms.sort((a, b) => a - b);
  const at = (q: number) => Math.round(ms[Math.min(ms.length - 1, Math.floor(q * ms.length))]! * 10) / 10;
  return { name, medianMs: at(0.5), p90Ms: at(0.9), runs, partitions };
}

/** The stats answer computed from events instead of rollups, for comparison. */
export function statsFromEvents(request: StatsRequest, from: number, to: number): { text: string; values: unknown[] } {
  return {
    text: `SELECT date_bin($4::interval, occurred_at, 'epoch') AS t, ${request.groupBy ? 'type' : "''"} AS g, count(*), count(value), sum(value), min(value), max(value)
           FROM events WHERE tenant = $1 AND occurred_at >= $2 AND occurred_at < $3 GROUP BY 1, 2`,
    values: [request.tenant, new Date(from), new Date(to), `${request.stepMs / 1000} seconds`],
  };
}

/** Times stats and event reads of one tenant of the filled database. */
export async function measureQueries(pool: Pool, options: { retentionDays: number; maxPoints: number }): Promise<QueryFigure[]> {
  const figures: QueryFigure[] = [];
  const tenant = 'tenant-3';
  const stats: [string, Omit<StatsRequest, 'tenant' | 'aggregates'>][] = [
    ['stats 1h, step 1m, type=order.*', { windowMs: HOUR, stepMs: MINUTE, type: { prefix: 'order.' }, groupBy: null }],
    ['stats 24h, step 5m, group_by=type', { windowMs: DAY, stepMs: 5 * MINUTE, type: null, groupBy: 'type' }],
    ['stats 7d, step 1h, group_by=type', { windowMs: 7 * DAY, stepMs: HOUR, type: null, groupBy: 'type' }],
    ['stats 7d, step 1d', { windowMs: 7 * DAY, stepMs: DAY, type: null, groupBy: null }],
  ];
  for (const [name, partial] of stats) {
    const request: StatsRequest = { ...partial, tenant, aggregates: ['count', 'sum', 'avg', 'min', 'max'] };
    const now = Date.now();
    const plan = planStats(request, now);
    const read = { now, retentionDays: options.retentionDays, maxPoints: options.maxPoints };
    figures.push(
      await time(
        `${name} (rollup_${plan.resolution})`,
        20,
        () => readStats(pool, request, plan, read),
        await partitionsRead(pool, statsQuery(request, plan, read)),
      ),
    );
    const naive = statsFromEvents(request, plan.from, plan.to);
    figures.push(await time(`  the same from events`, 3, () => pool.query(naive), await partitionsRead(pool, naive)));
  }
  const now = Date.now();
  const filter: EventFilter = {
    tenant,
    since: now - (options.retentionDays + 1) * DAY,
    until: now + DAY,
    type: null,
    source: null,
    idempotencyKey: null,
  };
  const first = { limit: 100, order: 'desc' as const, cursor: null };
  figures.push(
    await time(
      'events, first page of 100',
      20,
      () => listEvents(pool, filter, first),
      await partitionsRead(pool, listEventsQuery(filter, first)),
    ),
  );
  // A cursor 3 days deep: what OFFSET would have to skip to get there is most of the tenant's events.
  const { rows } = await pool.query<{ at: string; id: string }>(
    `SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at, id FROM events
     WHERE tenant = $1 AND occurred_at < now() - interval '3 days' ORDER BY occurred_at DESC, id DESC LIMIT 1`,
    [tenant],
  );
  const deep = { limit: 100, order: 'desc' as const, cursor: { order: 'desc', at: rows[0]!.at, id: rows[0]!.id } as EventCursor };
  figures.push(
    await time(
      'events, page of 100 three days deep (cursor)',
      20,
      () => listEvents(pool, filter, deep),
      await partitionsRead(pool, listEventsQuery(filter, deep)),
    ),
  );
  const day = { ...filter, since: now - 2 * DAY, until: now - DAY, type: { exact: 'signup' } };
  figures.push(
    await time(
      'events, one day, type=signup, page of 1000',
      20,
      () => listEvents(pool, day, { ...first, limit: 1000 }),
      await partitionsRead(pool, listEventsQuery(day, { ...first, limit: 1000 })),
    ),
  );
  const { rows: some } = await pool.query<{ id: string }>(
    "SELECT id FROM events WHERE tenant = $1 AND occurred_at < now() - interval '2 days' LIMIT 1",
    [tenant],
  );
  const id = some[0]!.id;
  figures.push(await time('event by id', 20, () => getEvent(pool, tenant, id), 'events ×every partition (one primary-key probe each)'));
  return figures;
}

interface PlanNode {
  readonly 'Node Type': string;
  readonly 'Index Name'?: string;
  readonly 'Presorted Key'?: string[];
  readonly Plans?: PlanNode[];
}

/** The chain of plan nodes down to the first scan, one line: what Postgres does to produce the page. */
async function planShape(pool: Pool, query: { text: string; values: unknown[] }): Promise<string> {
  const { rows } = await pool.query<{ 'QUERY PLAN': { Plan: PlanNode }[] }>({
    text: `EXPLAIN (FORMAT JSON) ${query.text}`,
    values: query.values,
  });
  const nodes: string[] = [];
  let node: PlanNode | undefined = rows[0]!['QUERY PLAN'][0]!.Plan;
  while (node) {
    const index = node['Index Name'] ? ` on ${node['Index Name'].replace(/^events_p\d{8}_/, '')}` : '';
    const children: PlanNode[] = node.Plans ?? [];
    nodes.push(
      `${node['Node Type']}${index}${node['Node Type'] === 'Append' || node['Node Type'] === 'Merge Append' ? ` of ${children.length}` : ''}`,
    );
    node = children[0];
  }
  return nodes.join(' → ');
}

/** A listing's page with the (tenant, occurred_at, id) index against the (tenant, occurred_at) index it replaced. */
export interface IndexFigure {
  readonly index: string;
  readonly page: string;
  readonly medianMs: number;
  readonly plan: string;
}

const TIED = 50_000;

/** A batch import: `TIED` events of one tenant sharing one timestamp, stored through the worker's write path. */
async function storeTiedImport(pool: Pool, tenant: string): Promise<void> {
  const { rows } = await pool.query<{ n: string }>('SELECT count(*) AS n FROM events WHERE tenant = $1', [tenant]);
  if (Number(rows[0]!.n) >= TIED) return;
  const receivedAt = Date.now();
  const timestamp = new Date(receivedAt - DAY).toISOString();
  const limits = { retentionDays: 30, maxEventDataBytes: 32 * 1024 };
  for (let n = 0; n < TIED; n += 5000) {
    const valid = Array.from({ length: 5000 }, (_, i) => {
      const check = checkEvent({ type: 'import.row', timestamp, value: i, data: { row: n + i } }, receivedAt, limits);
      if (!check.ok) throw new Error(JSON.stringify(check.errors));
      return check.event;
    });
    await writeEntries(pool, [decodeEntry(encodeEntry(tenant, 'low', receivedAt, valid))]);
  }
  await pool.query('ANALYZE events');
}

/**
 * Times pages of a tenant whose newest events are one batch import sharing a timestamp, with each index: the
 * first page, and a page whose cursor sits in the middle of the tied events. Builds the old index, then
 * restores the new one, timing that build (what migration 007 costs on a table of this size).
 */
export async function measureIndexChoice(pool: Pool, retentionDays: number): Promise<{ figures: IndexFigure[]; buildSeconds: number }> {
  const build = { seconds: 0 };
  const tenant = 'tenant-import';
  await storeTiedImport(pool, tenant);
  const now = Date.now();
  const filter: EventFilter = {
    tenant,
    since: now - (retentionDays + 1) * DAY,
    until: now + DAY,
    type: null,
    source: null,
    idempotencyKey: null,
  };
  const { rows } = await pool.query<{ at: string; id: string }>(
    `SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at, id FROM events
     WHERE tenant = $1 ORDER BY occurred_at DESC, id DESC OFFSET $2 LIMIT 1`,
    [tenant, TIED / 2],
  );
  const pages = [
    ['first page', { limit: 100, order: 'desc' as const, cursor: null }],
    [
      `cursor after ${TIED / 2} of ${TIED} tied events`,
      { limit: 100, order: 'desc' as const, cursor: { order: 'desc', at: rows[0]!.at, id: rows[0]!.id } as EventCursor },
    ],
  ] as const;
  const figures: IndexFigure[] = [];
  const measure = async (index: string) => {
    for (const [page, request] of pages) {
      const f = await time(page, 20, () => listEvents(pool, filter, request), '');
      figures.push({ index, page, medianMs: f.medianMs, plan: await planShape(pool, listEventsQuery(filter, request)) });
    }
  };
  await measure('(tenant, occurred_at, id)');
  await pool.query('CREATE INDEX bench_events_tenant_occurred_at ON events (tenant, occurred_at)');
  await pool.query('DROP INDEX events_tenant_occurred_at_id');
  try {
    await pool.query('ANALYZE events');
    await measure('(tenant, occurred_at)');
  } finally {
    const started = performance.now();
    await pool.query('CREATE INDEX events_tenant_occurred_at_id ON events (tenant, occurred_at, id)');
    build.seconds = (performance.now() - started) / 1000;
    await pool.query('DROP INDEX bench_events_tenant_occurred_at');
  }
  return { figures, buildSeconds: build.seconds };
}
