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
  readonly resolution: StatsResolution;
  /**
   * What the read names: rollup_minute (with the pending deltas of rollup_pending), or the live view of a coarser
   * level (db/migrations/010_rollup_watermark.sql, 011_rollup_pending.sql).
   */
  readonly table: 'rollup_minute' | 'rollup_5m_live' | 'rollup_hour_live' | 'rollup_day_live';
  readonly from: number;
  readonly to: number;
  readonly buckets: number;
}

/** The rollup levels, as an answer's `resolution` names them. */
export const STATS_RESOLUTIONS = ['minute', '5m', 'hour', 'day'] as const;
export type StatsResolution = (typeof STATS_RESOLUTIONS)[number];

const LEVELS = [
  { resolution: 'day', table: 'rollup_day_live', width: DAY_MS },
  { resolution: 'hour', table: 'rollup_hour_live', width: HOUR_MS },
  { resolution: '5m', table: 'rollup_5m_live', width: 5 * MINUTE_MS },
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

/**
 * One row of a stats read, as node-postgres hands it over in array mode: the tenant's newest minute (epoch ms,
 * on every row), then one group and its cells — the buckets holding events, as one text of `,`-separated cells
 * of ` `-separated fields (see cellFields) — so that a series costs one field to decode, not a row per bucket.
 */
type StatsRow = [newest: number | null, g: string | null, cells: string | null, n: string | null];

/** The fields of a cell, in order, for the aggregates asked: bucket index and count always, the rest as needed. */
function cellFields(aggregates: readonly StatsAggregate[]) {
  const has = (agg: StatsAggregate) => aggregates.includes(agg);
  const fields: ('i' | 'count' | 'value_count' | 'sum' | 'min' | 'max')[] = ['i', 'count'];
  if (has('avg')) fields.push('value_count');
  if (has('sum') || has('avg')) fields.push('sum');
  if (has('min')) fields.push('min');
  if (has('max')) fields.push('max');
  return fields;
}

/** The stored answer: the cells of each group (in byte order of the group), and the newest committed minute. */
export interface StatsData {
  /** Start (epoch ms) of the newest minute (not in the future) holding a committed event of the tenant; null if none. */
  readonly newestMinute: number | null;
  /** Group value ('' without group_by) → its buckets holding events, as the read returned them. */
  readonly groups: ReadonlyMap<string, string>;
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

const COLUMNS = 'bucket, type, event_count, value_count, value_sum, value_min, value_max';

/** The pending minute deltas of rollup_pending (db/migrations/011_rollup_pending.sql), one row each, named `d`. */
const PENDING = `rollup_pending p CROSS JOIN LATERAL
      unnest(p.buckets, p.types, p.event_counts, p.value_counts, p.value_sums, p.value_mins, p.value_maxs)
      AS d(${COLUMNS})`;

/** The pending deltas of the tenant in [$2, $3): added to the minute rows by every read, whatever the level. */
function pendingRows(type: string): string {
  return `SELECT d.bucket, d.type, d.event_count, d.value_count, d.value_sum, d.value_min, d.value_max
      FROM ${PENDING}
      WHERE p.tenant = $1 AND p.hi >= $2 AND p.lo < $3 AND d.bucket >= $2 AND d.bucket < $3 ${type.replace(/\btype\b/g, 'd.type')}`;
}

/** The minute rows a minute-level read answers from: rollup_minute plus the pending deltas (rollup_minute_live). */
function minuteRows(type: string): string {
  return `
    src AS (
      SELECT ${COLUMNS} FROM rollup_minute WHERE tenant = $1 AND bucket >= $2 AND bucket < $3 ${type}
      UNION ALL
      ${pendingRows(type)}
    ),`;
}

/**
 * The rows a coarse level answers from at one snapshot: the level's stored rows of the range but those of stale
 * buckets, the minute rows at or after the roll-up watermark, the minute rows of the stale buckets below it, and
 * every pending delta (the rule of the rollup_*_live views of db/migrations/010_rollup_watermark.sql and
 * 011_rollup_pending.sql, written out so that the conditions reach every arm and the rows are aggregated once,
 * straight into the answer's buckets).
 */
function coarseRows(table: string, width: string, type: string): string {
  return `
    mark AS MATERIALIZED (SELECT upto FROM rollup_watermark),
    stale AS MATERIALIZED (
      SELECT DISTINCT date_bin('${width}', bucket, 'epoch') AS b FROM rollup_stale WHERE tenant = $1 AND bucket >= $2 AND bucket < $3
    ),
    src AS (
      SELECT ${COLUMNS} FROM ${table}
      WHERE tenant = $1 AND bucket >= $2 AND bucket < $3 ${type} AND bucket NOT IN (SELECT b FROM stale)
      UNION ALL
      SELECT ${COLUMNS} FROM rollup_minute
      WHERE tenant = $1 AND bucket >= $2 AND bucket < $3 ${type} AND bucket >= (SELECT upto FROM mark)
      UNION ALL
      SELECT m.bucket, m.type, m.event_count, m.value_count, m.value_sum, m.value_min, m.value_max
      FROM stale s JOIN rollup_minute m ON m.tenant = $1 AND m.bucket >= s.b AND m.bucket < s.b + interval '${width}'
      WHERE m.bucket >= $2 AND m.bucket < $3 ${type.replace(/\btype\b/g, 'm.type')} AND m.bucket < (SELECT upto FROM mark)
      UNION ALL
      ${pendingRows(type)}
    ),`;
}

const COARSE = {
  rollup_5m_live: { table: 'rollup_5m', width: '5 minutes' },
  rollup_hour_live: { table: 'rollup_hour', width: '1 hour' },
  rollup_day_live: { table: 'rollup_day', width: '1 day' },
} as const;

/**
 * The one statement readStats runs (one snapshot: the freshness it reports is the freshness of the numbers).
 * Both the rollup range and the freshness probe name their bucket range, so only the partitions in it are read.
 * Each row names its bucket by index from `from` (an int, not a timestamp to parse) and comes as an array; rows
 * come in no particular order (readStats orders the groups).
 */
export function statsQuery(request: StatsRequest, plan: StatsPlan, options: StatsReadOptions): Statement & { rowMode: 'array' } {
  const type = typeCondition(request.type, 8);
  const group = request.groupBy === 'type' ? 'type' : "''";
  // float8 as text is the shortest text that reads back as the same double; a missing minimum or maximum is `n`.
  const fields = cellFields(request.aggregates)
    .map((f) => (f === 'min' || f === 'max' ? `coalesce(${f}::text, 'n')` : f))
    .join(', ');
  const source =
    plan.table === 'rollup_minute' ? minuteRows(type.sql) : coarseRows(COARSE[plan.table].table, COARSE[plan.table].width, type.sql);
  const text = `
    WITH newest AS (
      SELECT greatest(
        (SELECT max(bucket) FROM rollup_minute WHERE tenant = $1 AND bucket >= $4 AND bucket <= $5),
        (SELECT max(d) FROM rollup_pending p CROSS JOIN LATERAL unnest(p.buckets) AS d
         WHERE p.tenant = $1 AND p.hi >= $4 AND p.lo <= $5 AND d >= $4 AND d <= $5)
      ) AS newest
    ),${source}
    points AS (
      SELECT floor(extract(epoch FROM bucket - $2::timestamptz)::float8 / $6::float8)::int AS i, ${group} AS g, sum(event_count)::bigint AS count,
             sum(value_count)::bigint AS value_count, sum(value_sum) AS sum, min(value_min) AS min, max(value_max) AS max
      FROM src
      GROUP BY 1, 2
      LIMIT $7
    ),
    series AS (
      SELECT g, string_agg(concat_ws(' ', ${fields}), ',') AS cells, count(*) AS n FROM points GROUP BY g
    )
    SELECT (extract(epoch FROM n.newest) * 1000)::float8, s.g, s.cells, s.n FROM newest n LEFT JOIN series s ON true`;
  const values = [
    request.tenant,
    new Date(plan.from),
    new Date(plan.to),
    new Date(options.now - (options.retentionDays + 1) * DAY_MS),
    new Date(options.now),
    request.stepMs / 1000,
    options.maxPoints + 1,
    ...type.values,
  ];
  return { text, values, rowMode: 'array' };
}

/** Byte order of the UTF-8 encodings (what ORDER BY … COLLATE "C" gives), whatever the strings hold. */
const byteOrder = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** Reads the points of a planned stats request; more groups × buckets than `maxPoints` is a 422. */
export async function readStats(pool: Pool, request: StatsRequest, plan: StatsPlan, options: StatsReadOptions): Promise<StatsData> {
  const { rows } = await pool.query<StatsRow>(prepared(statsQuery(request, plan, options)));
  const cells = rows.reduce((n, r) => n + Number(r[3] ?? 0), 0);
  if (cells > options.maxPoints) throw tooManyPoints(plan.buckets, null, options.maxPoints);
  const byGroup: [string, string][] = [];
  for (const r of rows) if (r[2] !== null) byGroup.push([r[1] ?? '', r[2]]);
  const series = request.groupBy ? byGroup.length : 1;
  if (series * plan.buckets > options.maxPoints) throw tooManyPoints(plan.buckets, series, options.maxPoints);
  // Series in byte order of their type, whatever the database's collation.
  const groups = new Map(byGroup.sort(([a], [b]) => byteOrder(a, b)));
  return { newestMinute: rows[0]?.[0] ?? null, groups };
}

function tooManyPoints(buckets: number, groups: number | null, maxPoints: number) {
  return apiError(
    'too_many_points',
    `the answer would hold more than ${maxPoints} points (${buckets} buckets × ${groups ?? 'more than one'} groups): narrow the type filter, drop group_by or take a coarser step`,
    { buckets, groups, max_points: maxPoints },
  );
}

/** A JSON number as JSON.stringify writes it (a non-finite one is null). */
const num = (x: number): string => (Number.isFinite(x) ? String(x) : 'null');

/** What renderStats writes besides the numbers. */
export interface StatsHeader {
  readonly window: string;
  readonly step: string;
}

/**
 * The answer's JSON, written directly: each bucket's `{"t":"…"` prefix and its empty point are made once and
 * shared by every series, and a point with events is one string built from its row. Points hold the requested
 * aggregates only, in the order asked; a bucket without events has count 0, sum 0 and null avg, min and max.
 */
export function renderStats(request: StatsRequest, plan: StatsPlan, data: StatsData, header: StatsHeader): string {
  const { aggregates } = request;
  const prefixes = new Array<string>(plan.buckets);
  const empties = new Array<string>(plan.buckets);
  let emptyTail = '';
  for (const agg of aggregates) emptyTail += agg === 'count' || agg === 'sum' ? `,"${agg}":0` : `,"${agg}":null`;
  emptyTail += '}';
  for (let i = 0; i < plan.buckets; i++) {
    prefixes[i] = `{"t":"${new Date(plan.from + i * request.stepMs).toISOString()}"`;
    empties[i] = prefixes[i] + emptyTail;
  }
  const fields = cellFields(aggregates);
  const at = (f: (typeof fields)[number]) => fields.indexOf(f);
  const [count, valueCount, sum, min, max] = [at('count'), at('value_count'), at('sum'), at('min'), at('max')];
  const value = (text: string | undefined) => (text === undefined || text === 'n' ? 'null' : num(Number(text)));
  const point = (f: string[]): string => {
    let out = prefixes[Number(f[0])]!;
    for (const agg of aggregates) {
      if (agg === 'count') out += `,"count":${f[count]}`;
      else if (agg === 'sum') out += `,"sum":${num(Number(f[sum]))}`;
      else if (agg === 'avg') out += Number(f[valueCount]) > 0 ? `,"avg":${num(Number(f[sum]) / Number(f[valueCount]))}` : ',"avg":null';
      else out += `,"${agg}":${value(f[agg === 'min' ? min : max])}`;
    }
    return out + '}';
  };
  const groups = request.groupBy ? [...data.groups.keys()] : [''];
  const series: string[] = [];
  for (const g of groups) {
    const cells = empties.slice();
    const text = data.groups.get(g);
    if (text) {
      for (const cell of text.split(',')) {
        const f = cell.split(' ');
        cells[Number(f[0])] = point(f);
      }
    }
    const points = `"points":[${cells.join(',')}]}`;
    series.push(request.groupBy ? `{${JSON.stringify(request.groupBy)}:${JSON.stringify(g)},${points}` : `{${points}`);
  }
  return (
    `{"window":${JSON.stringify(header.window)},"step":${JSON.stringify(header.step)},"resolution":"${plan.resolution}",` +
    `"from":"${new Date(plan.from).toISOString()}","to":"${new Date(plan.to).toISOString()}",` +
    `"newest_minute":${data.newestMinute === null ? 'null' : `"${new Date(data.newestMinute).toISOString()}"`},` +
    `"group_by":${JSON.stringify(request.groupBy)},"aggregates":${JSON.stringify(aggregates)},"series":[${series.join(',')}]}`
  );
}
