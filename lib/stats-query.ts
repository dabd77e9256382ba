import { prepared, type Pool, type Statement } from './db.js';
import { apiError } from './errors.js';
import { byteOrder, cellFields, parsePart, type StatsPart } from './stats-cells.js';
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
  /** The stored level read below the roll-up watermark (db/migrations/010_rollup_watermark.sql). */
  readonly table: 'rollup_minute' | 'rollup_5m' | 'rollup_hour' | 'rollup_day';
  /** Its bucket width, as an SQL interval. */
  readonly width: '1 minute' | '5 minutes' | '1 hour' | '1 day';
  readonly from: number;
  readonly to: number;
  readonly buckets: number;
}

/** The rollup levels, as an answer's `resolution` names them. */
export const STATS_RESOLUTIONS = ['minute', '5m', 'hour', 'day'] as const;
export type StatsResolution = (typeof STATS_RESOLUTIONS)[number];

const LEVELS = [
  { resolution: 'day', table: 'rollup_day', interval: '1 day', width: DAY_MS },
  { resolution: 'hour', table: 'rollup_hour', interval: '1 hour', width: HOUR_MS },
  { resolution: '5m', table: 'rollup_5m', interval: '5 minutes', width: 5 * MINUTE_MS },
  { resolution: 'minute', table: 'rollup_minute', interval: '1 minute', width: MINUTE_MS },
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
  return { resolution: level.resolution, table: level.table, width: level.interval, from, to, buckets: (to - from) / request.stepMs };
}

/**
 * What identifies the rolled-up past of a range at one snapshot: the read version (bumped by every change to
 * the coarse rows, db/migrations/012_rollup_read_version.sql), the roll-up watermark, and the stale minutes of
 * the tenant in the range. While all three are unchanged, the base part of an answer (stored rows below the
 * watermark of buckets that are not stale) is unchanged.
 */
export interface StatsToken {
  readonly version: string;
  /** rollup_watermark.upto, epoch ms. */
  readonly upto: number;
  /** The stale minutes of the tenant in [from, to), epoch ms, `,`-separated in order. */
  readonly stale: string;
}

/** What one read returned, in one snapshot. */
export interface StatsRead {
  /** Start (epoch ms) of the newest minute (not in the future) holding a committed event of the tenant; null if none. */
  readonly newestMinute: number | null;
  readonly token: StatsToken;
  /** The stored rows below the watermark of buckets that are not stale; null when the caller's token still holds. */
  readonly base: StatsPart | null;
  /** The minute rows at or after the watermark, and those of stale buckets. */
  readonly live: StatsPart;
  /** The live part as the read returned it, with the newest minute: equal texts over one base, equal answers. */
  readonly liveText: string;
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
const MINUTE_COLUMNS = 'm.bucket, m.type, m.event_count, m.value_count, m.value_sum, m.value_min, m.value_max';

/** The pending minute deltas of rollup_pending (db/migrations/011_rollup_pending.sql), one row each, named `d`. */
const PENDING = `rollup_pending p CROSS JOIN LATERAL
      unnest(p.buckets, p.types, p.event_counts, p.value_counts, p.value_sums, p.value_mins, p.value_maxs)
      AS d(${COLUMNS})`;

/**
 * The one statement readStats runs (one snapshot: the freshness it reports is the freshness of the numbers, and
 * the token names exactly the base it returns or skips). It splits the rows of the live view's rule
 * (db/migrations/010_rollup_watermark.sql) in two parts, each aggregated straight into the answer's buckets:
 *
 * - base: the level's stored rows below the watermark, but those of stale buckets. Read only when the token of
 *   this snapshot differs from the caller's ($8–$10): otherwise the one-time filter skips the scan.
 * - live: the minute rows at or after the watermark, the minute rows of stale buckets below it, and every pending
 *   delta of the range (rollup_pending, db/migrations/011_rollup_pending.sql: a pending delta below the
 *   watermark was written with its minute marked stale, and a fold moves deltas into rollup_minute in one
 *   transaction, so nothing is counted twice or left out, and a fold leaves the base as it was).
 *
 * For the minute level the stored rows are the minute rows themselves. Every row names its part (`b`/`l`), its
 * group and its buckets holding events, by index from `from`, as one text (see parsePart); the token comes on
 * every row. Both the rollup range and the freshness probe name their bucket range, so only the partitions in
 * it are read.
 */
export function statsQuery(
  request: StatsRequest,
  plan: StatsPlan,
  options: StatsReadOptions,
  known: StatsToken | null,
): Statement & { rowMode: 'array' } {
  const type = typeCondition(request.type, 11);
  const group = request.groupBy === 'type' ? 'type' : "''";
  // float8 as text is the shortest text that reads back as the same double; a missing minimum or maximum is `n`.
  const fields = cellFields(request.aggregates)
    .map((f) => (f === 'min' || f === 'max' ? `coalesce(${f}::text, 'n')` : f))
    .join(', ');
  const range = `tenant = $1 AND bucket >= $2 AND bucket < $3 ${type.sql}`;
  const text = `
    WITH newest AS (
      SELECT greatest(
        (SELECT max(bucket) FROM rollup_minute WHERE tenant = $1 AND bucket >= $4 AND bucket <= $5),
        (SELECT max(d) FROM rollup_pending p CROSS JOIN LATERAL unnest(p.buckets) AS d
         WHERE p.tenant = $1 AND p.hi >= $4 AND p.lo <= $5 AND d >= $4 AND d <= $5)
      ) AS newest
    ),
    stale_minutes AS MATERIALIZED (SELECT bucket FROM rollup_stale WHERE tenant = $1 AND bucket >= $2 AND bucket < $3),
    token AS MATERIALIZED (
      SELECT (SELECT version FROM rollup_read_version) AS version, (SELECT upto FROM rollup_watermark) AS upto,
             (SELECT coalesce(string_agg((extract(epoch FROM bucket) * 1000)::bigint::text, ',' ORDER BY bucket), '') FROM stale_minutes) AS stale
    ),
    redo AS MATERIALIZED (
      SELECT (t.version, t.upto, t.stale) IS DISTINCT FROM ($8::bigint, $9::timestamptz, $10::text) AS yes FROM token t
    ),
    stale AS MATERIALIZED (SELECT DISTINCT date_bin('${plan.width}', bucket, 'epoch') AS b FROM stale_minutes),
    src AS (
      SELECT 'b' AS k, ${COLUMNS} FROM ${plan.table}
      WHERE ${range} AND bucket < (SELECT upto FROM token) AND bucket NOT IN (SELECT b FROM stale) AND (SELECT yes FROM redo)
      UNION ALL
      SELECT 'l', ${COLUMNS} FROM rollup_minute
      WHERE ${range} AND bucket >= (SELECT upto FROM token)
      UNION ALL
      SELECT 'l', ${MINUTE_COLUMNS}
      FROM stale s JOIN rollup_minute m ON m.tenant = $1 AND m.bucket >= s.b AND m.bucket < s.b + interval '${plan.width}'
      WHERE m.bucket >= $2 AND m.bucket < $3 ${type.sql.replace(/\btype\b/g, 'm.type')} AND m.bucket < (SELECT upto FROM token)
      UNION ALL
      SELECT 'l', d.bucket, d.type, d.event_count, d.value_count, d.value_sum, d.value_min, d.value_max
      FROM ${PENDING}
      WHERE p.tenant = $1 AND p.hi >= $2 AND p.lo < $3 AND d.bucket >= $2 AND d.bucket < $3 ${type.sql.replace(/\btype\b/g, 'd.type')}
    ),
    points AS (
      SELECT k, floor(extract(epoch FROM bucket - $2::timestamptz)::float8 / $6::float8)::int AS i, ${group} AS g, sum(event_count)::bigint AS count,
             sum(value_count)::bigint AS value_count, sum(value_sum) AS sum, min(value_min) AS min, max(value_max) AS max
      FROM src
      GROUP BY 1, 2, 3
      LIMIT $7
    ),
    series AS (
      SELECT k, g, string_agg(concat_ws(' ', ${fields}), ',') AS cells FROM points GROUP BY k, g
    )
    SELECT (extract(epoch FROM n.newest) * 1000)::float8, t.version, (extract(epoch FROM t.upto) * 1000)::float8, t.stale, r.yes, s.k, s.g, s.cells
    FROM newest n CROSS JOIN token t CROSS JOIN redo r LEFT JOIN series s ON true`;
  const values = [
    request.tenant,
    new Date(plan.from),
    new Date(plan.to),
    new Date(options.now - (options.retentionDays + 1) * DAY_MS),
    new Date(options.now),
    request.stepMs / 1000,
    // Each part alone holds distinct cells: more than maxPoints in either is more than maxPoints in the answer.
    2 * (options.maxPoints + 1),
    known?.version ?? null,
    known ? new Date(known.upto) : null,
    known?.stale ?? null,
    ...type.values,
  ];
  return { text, values, rowMode: 'array' };
}

/** One row of a stats read, as node-postgres hands it over in array mode (see statsQuery). */
type StatsRow = [
  newest: number | null,
  version: string,
  upto: number,
  stale: string,
  redo: boolean,
  part: 'b' | 'l' | null,
  g: string | null,
  cells: string | null,
];

/**
 * Reads a planned stats request: the base part only when `known` (the token of a base the caller kept) no
 * longer holds, the live part always. More cells than `maxPoints` in either part is a 422.
 */
export async function readStats(
  pool: Pool,
  request: StatsRequest,
  plan: StatsPlan,
  options: StatsReadOptions,
  known: StatsToken | null = null,
): Promise<StatsRead> {
  const { rows } = await pool.query<StatsRow>(prepared(statsQuery(request, plan, options, known)));
  const first = rows[0]!;
  const fields = cellFields(request.aggregates);
  const part = (k: 'b' | 'l') =>
    parsePart(
      rows.flatMap((r) => (r[5] === k && r[7] !== null ? [[r[6] ?? '', r[7]] as [string, string]] : [])),
      fields,
    );
  const base = first[4] ? part('b') : null;
  const live = part('l');
  let liveText = String(first[0]);
  for (const r of rows) if (r[5] === 'l') liveText += `\n${r[6]}\n${r[7]}`;
  if ((base?.cells ?? 0) > options.maxPoints || live.cells > options.maxPoints) throw tooManyPoints(plan.buckets, null, options.maxPoints);
  return { newestMinute: first[0], token: { version: first[1], upto: first[2], stale: first[3] }, base, live, liveText };
}

/** The groups of an answer: base and live together, in byte order (whatever the database's collation). */
export function answerGroups(request: StatsRequest, base: StatsPart, live: StatsPart): string[] {
  if (!request.groupBy) return [''];
  const groups = new Set([...base.groups.keys(), ...live.groups.keys()]);
  return [...groups].sort(byteOrder);
}

/** A 422 unless the answer's series × buckets fit in maxPoints. */
export function checkPoints(plan: StatsPlan, series: number, maxPoints: number): void {
  if (series * plan.buckets > maxPoints) throw tooManyPoints(plan.buckets, series, maxPoints);
}

function tooManyPoints(buckets: number, groups: number | null, maxPoints: number) {
  return apiError(
    'too_many_points',
    `the answer would hold more than ${maxPoints} points (${buckets} buckets × ${groups ?? 'more than one'} groups): narrow the type filter, drop group_by or take a coarser step`,
    { buckets, groups, max_points: maxPoints },
  );
}
