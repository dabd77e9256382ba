import { prepared, type Pool, type Statement } from './db.js';
import { apiError } from './errors.js';
import type { TypePattern } from './type-pattern.js';

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;

/** The aggregates a stats request may ask for, each computed from the rollup columns. */
export const STATS_AGGREGATES = ['count', 'sum', 'avg', 'min', 'max'] as const;
export type StatsAggregate = (typeof STATS_AGGREGATES)[number];

/** What a stats answer may be grouped by. */
export const STATS_GROUP_BY = ['type'] as const;
export type StatsGroupBy = (typeof STATS_GROUP_BY)[number];

/** One tenant's stats question, already validated. */
export interface StatsRequest {
  readonly tenant: string;
  readonly windowMs: number;
  readonly stepMs: number;
  readonly type: TypePattern | null;
  readonly groupBy: StatsGroupBy | null;
  readonly aggregates: readonly StatsAggregate[];
}

/** Which rollup level answers, and the step-aligned range [from, to) it reads. */
export interface StatsPlan {
  readonly resolution: 'minute' | 'hour' | 'day';
  readonly table: 'rollup_minute' | 'rollup_hour' | 'rollup_day';
  readonly from: number;
  readonly to: number;
  readonly buckets: number;
}

const LEVELS = [
  { resolution: 'day', table: 'rollup_day', width: DAY_MS },
  { resolution: 'hour', table: 'rollup_hour', width: HOUR_MS },
  { resolution: 'minute', table: 'rollup_minute', width: MINUTE_MS },
] as const;

/**
 * Picks the coarsest rollup whose buckets tile the step exactly, and the range: from the start of the step
 * holding `now - window` to the end of the step holding `now`, steps aligned on the Unix epoch (so day steps
 * start at UTC midnight). Every step is a whole number of that level's buckets: the answer is exact.
 */
export function planStats(request: Pick<StatsRequest, 'windowMs' | 'stepMs'>, now: number): StatsPlan {
  const level = LEVELS.find((l) => request.stepMs % l.width === 0);
  if (!level) throw new Error(`step ${request.stepMs} ms is not a whole number of minutes`);
  const from = Math.floor((now - request.windowMs) / request.stepMs) * request.stepMs;
  const to = (Math.floor(now / request.stepMs) + 1) * request.stepMs;
  return { resolution: level.resolution, table: level.table, from, to, buckets: (to - from) / request.stepMs };
}

/** One bucket of one series: the aggregates over the rollup rows it covers. */
export interface StatsPoint {
  readonly count: number;
  readonly valueCount: number;
  readonly sum: number;
  readonly min: number | null;
  readonly max: number | null;
}

/** The stored answer: sparse points per group, and the newest committed minute of the tenant. */
export interface StatsData {
  /** Start of the newest minute (not in the future) holding a committed event of the tenant; null if none. */
  readonly newestMinute: Date | null;
  /** Group value ('' without group_by) → bucket start (epoch ms) → point. */
  readonly groups: ReadonlyMap<string, ReadonlyMap<number, StatsPoint>>;
}

interface StatsRow {
  newest: Date | null;
  t: Date | null;
  g: string | null;
  count: string;
  value_count: string;
  sum: number;
  min: number | null;
  max: number | null;
}

// starts_with rather than LIKE: type names may hold `_`, a LIKE wildcard. The filter is the last parameter.
function typeCondition(filter: TypePattern | null, n: number): { sql: string; values: string[] } {
  if (!filter) return { sql: '', values: [] };
  return 'exact' in filter
    ? { sql: `AND type = $${n}`, values: [filter.exact] }
    : { sql: `AND starts_with(type, $${n})`, values: [filter.prefix] };
}

/** What readStats needs beside the request and its plan. */
export interface StatsReadOptions {
  readonly now: number;
  readonly retentionDays: number;
  /** Most points an answer may hold (buckets × groups). */
  readonly maxPoints: number;
}

/**
 * The one statement readStats runs (one snapshot: the freshness it reports is the freshness of the numbers).
 * Both the rollup range and the freshness probe name their bucket range, so only the partitions in it are read.
 */
export function statsQuery(request: StatsRequest, plan: StatsPlan, options: StatsReadOptions): Statement {
  const type = typeCondition(request.type, 8);
  const group = request.groupBy === 'type' ? 'type' : "''";
  // Series in byte order of their type, whatever the database's collation.
  const order = request.groupBy === 'type' ? 'type COLLATE "C", 1' : '1';
  const text = `
    WITH newest AS (
      SELECT max(bucket) AS newest FROM rollup_minute WHERE tenant = $1 AND bucket >= $4 AND bucket <= $5
    ),
    points AS (
      SELECT date_bin($6::interval, bucket, 'epoch') AS t, ${group} AS g, sum(event_count)::bigint AS count, sum(value_count)::bigint AS value_count,
             sum(value_sum) AS sum, min(value_min) AS min, max(value_max) AS max
      FROM ${plan.table}
      WHERE tenant = $1 AND bucket >= $2 AND bucket < $3 ${type.sql}
      GROUP BY 1, 2
      ORDER BY ${order}
      LIMIT $7
    )
    SELECT n.newest, p.* FROM newest n LEFT JOIN points p ON true`;
  const values = [
    request.tenant,
    new Date(plan.from),
    new Date(plan.to),
    new Date(options.now - (options.retentionDays + 1) * DAY_MS),
    new Date(options.now),
    `${request.stepMs / 1000} seconds`,
    options.maxPoints + 1,
    ...type.values,
  ];
  return { text, values };
}

/** Reads the points of a planned stats request; more groups × buckets than `maxPoints` is a 422. */
export async function readStats(pool: Pool, request: StatsRequest, plan: StatsPlan, options: StatsReadOptions): Promise<StatsData> {
  const { rows } = await pool.query<StatsRow>(prepared(statsQuery(request, plan, options)));
  if (rows.length > options.maxPoints) throw tooManyPoints(plan.buckets, null, options.maxPoints);
  const groups = new Map<string, Map<number, StatsPoint>>();
  for (const r of rows) {
    if (r.t === null) continue;
    let points = groups.get(r.g ?? '');
    if (!points) groups.set(r.g ?? '', (points = new Map<number, StatsPoint>()));
    points.set(r.t.getTime(), { count: Number(r.count), valueCount: Number(r.value_count), sum: r.sum, min: r.min, max: r.max });
  }
  const series = request.groupBy ? groups.size : 1;
  if (series * plan.buckets > options.maxPoints) throw tooManyPoints(plan.buckets, series, options.maxPoints);
  return { newestMinute: rows[0]?.newest ?? null, groups };
}

function tooManyPoints(buckets: number, groups: number | null, maxPoints: number) {
  return apiError(
    'too_many_points',
    `the answer would hold more than ${maxPoints} points (${buckets} buckets × ${groups ?? 'more than one'} groups): narrow the type filter, drop group_by or take a coarser step`,
    { buckets, groups, max_points: maxPoints },
  );
}

/** One point as the API renders it: the requested aggregates only; avg, min and max are null without values. */
export function renderPoint(
  t: number,
  point: StatsPoint | undefined,
  aggregates: readonly StatsAggregate[],
): Record<string, string | number | null> {
  const out: Record<string, string | number | null> = { t: new Date(t).toISOString() };
  for (const agg of aggregates) {
    if (agg === 'count') out.count = point?.count ?? 0;
    else if (agg === 'sum') out.sum = point?.sum ?? 0;
    else if (agg === 'avg') out.avg = point && point.valueCount > 0 ? point.sum / point.valueCount : null;
    else out[agg] = point?.[agg] ?? null;
  }
  return out;
}
