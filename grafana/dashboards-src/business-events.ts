/**
 * The "Floodgate / Business events" dashboard (grafana/dashboards/business-events.json): what the tenants' events
 * say, read from the rollups in PostgreSQL (the live views rollup_minute_live, rollup_hour_live and
 * rollup_day_live: per tenant, type and bucket, the event count and the count, sum, min and
 * max of `value`, exact at every moment), never from the events table.
 */
import { GREEN, ORANGE, RED, type SqlDashboardSpec } from '../builder.js';
import { sql } from '../sql.js';

// The rollup level a query reads follows the dashboard's time range, so that a panel never scans more than a few
// thousand buckets per type: minutes up to 2 days, hours up to 62 days, days beyond. Each branch's range test is
// a constant, so PostgreSQL skips the other two tables.
const LEVELS = [
  { table: 'rollup_minute_live', seconds: 60, when: `<= interval '2 days'` },
  {
    table: 'rollup_hour_live',
    seconds: 3600,
    when: `> interval '2 days' AND $__timeTo()::timestamptz - $__timeFrom()::timestamptz <= interval '62 days'`,
  },
  { table: 'rollup_day_live', seconds: 86400, when: `> interval '62 days'` },
] as const;

/** The rows of the selected tenants and types at the level that fits the range, with each bucket's width in seconds. */
const ROLLUP = `WITH r AS (
${LEVELS.map(
  (level) => `  SELECT bucket, tenant, type, event_count, value_count, value_sum, value_min, value_max, ${level.seconds} AS seconds
  FROM ${level.table}
  WHERE $__timeTo()::timestamptz - $__timeFrom()::timestamptz ${level.when}
    AND $__timeFilter(bucket) AND tenant IN ($tenant) AND type IN ($type)`,
).join('\n  UNION ALL\n')}
)`;

// The newest minute bucket of the selected tenants: a backward probe of rollup_minute's primary key (tenant, bucket,
// type), and the minute deltas not yet folded into it (rollup_pending).
const NEWEST_MINUTE = `SELECT greatest(
  (SELECT max(bucket) FROM rollup_minute WHERE tenant IN ($tenant) AND bucket > now() - interval '1 day'),
  (SELECT max(d) FROM rollup_pending p CROSS JOIN LATERAL unnest(p.buckets) AS d WHERE p.tenant IN ($tenant) AND d > now() - interval '1 day'))`;

export const dashboard: SqlDashboardSpec = {
  datasource: 'postgres',
  file: 'business-events.json',
  uid: 'floodgate-business-events',
  title: 'Floodgate / Business events',
  description: "What the tenants' events say: counts and values by type over time, from the rollup tables in PostgreSQL.",
  variables: [
    {
      name: 'tenant',
      label: 'Tenant',
      description: 'Tenants with events in the chosen time range (from the day rollups).',
      sql: `SELECT DISTINCT tenant FROM rollup_day_live WHERE bucket > $__timeFrom()::timestamptz - interval '1 day' AND bucket <= $__timeTo()::timestamptz ORDER BY 1`,
    },
    {
      name: 'type',
      label: 'Type',
      description: 'Event types of the chosen tenants in the chosen time range.',
      sql: `SELECT DISTINCT type FROM rollup_day_live WHERE tenant IN ($tenant) AND bucket > $__timeFrom()::timestamptz - interval '1 day' AND bucket <= $__timeTo()::timestamptz ORDER BY 1`,
    },
  ],
  rows: [
    {
      title: 'Overview',
      panels: [
        {
          title: 'Events in range',
          kind: 'stat',
          width: 6,
          height: 5,
          unit: 'short',
          queries: [sql(`${ROLLUP}\nSELECT coalesce(sum(event_count), 0) AS "events" FROM r`, 'table')],
          description:
            'Events of the chosen tenants and types whose time falls in the range (buckets that start in it), as stored: duplicates refused by idempotency key are not counted.',
        },
        {
          title: 'Value sum in range',
          kind: 'stat',
          width: 6,
          height: 5,
          unit: 'short',
          queries: [sql(`${ROLLUP}\nSELECT coalesce(sum(value_sum), 0) AS "value sum" FROM r`, 'table')],
          description:
            'Sum of the `value` field over the same events (events without a value add nothing): revenue, quantities, durations, whatever the tenant puts there.',
        },
        {
          title: 'Types in range',
          kind: 'stat',
          width: 6,
          height: 5,
          unit: 'short',
          queries: [sql(`${ROLLUP}\nSELECT count(DISTINCT type) AS "types" FROM r`, 'table')],
          description:
            'Distinct event types among the chosen ones that had at least one event in the range. A type that stops appearing shows here first.',
        },
        {
          title: 'Freshness',
          kind: 'stat',
          width: 6,
          height: 5,
          unit: 's',
          thresholds: [
            { value: null, color: GREEN },
            { value: 180, color: ORANGE },
            { value: 600, color: RED },
          ],
          noValue: 'no events in the last day',
          queries: [
            sql(
              `SELECT extract(epoch FROM now() - (${NEWEST_MINUTE}) - interval '1 minute')::float8 AS "seconds since the newest minute"`,
              'table',
            ),
          ],
          description:
            'Seconds since the end of the newest minute with events of the chosen tenants (the rollups are written in the transaction that stores the events). ' +
            'Steady traffic keeps it under a minute or two; a climb means events stopped arriving or are not being stored (see the Pipeline dashboard). A quiet tenant climbs too.',
        },
      ],
    },
    {
      title: 'By type over time',
      panels: [
        {
          title: 'Events per minute by type',
          width: 24,
          unit: 'short',
          min: 0,
          stack: true,
          queries: [
            sql(
              `${ROLLUP}\nSELECT bucket AS "time", type AS metric, sum(event_count) * 60.0 / min(seconds) AS value FROM r GROUP BY 1, 2 ORDER BY 1, 2`,
            ),
          ],
          description:
            'Events per minute of each chosen type (all chosen tenants together), stacked. Read from minute rollups for ranges up to 2 days, ' +
            'hour rollups up to 62 days and day rollups beyond, always scaled to a per-minute rate.',
        },
        {
          title: 'Value sum per minute by type',
          width: 24,
          unit: 'short',
          queries: [
            sql(
              `${ROLLUP}\nSELECT bucket AS "time", type AS metric, sum(value_sum) * 60.0 / min(seconds) AS value FROM r WHERE value_count > 0 GROUP BY 1, 2 ORDER BY 1, 2`,
            ),
          ],
          description:
            'Sum of `value` per minute of each type that carries one (types whose events have no value are left out), at the same resolution as the panel above.',
        },
      ],
    },
    {
      title: 'Top types',
      panels: [
        {
          title: 'Top types in range',
          kind: 'table',
          width: 24,
          height: 10,
          queries: [
            sql(
              `${ROLLUP}
SELECT type AS "type", sum(event_count) AS "events", round(100.0 * sum(event_count) / sum(sum(event_count)) OVER (), 1) AS "share %",
  sum(value_count) AS "with value", sum(value_sum) AS "value sum", min(value_min) AS "value min", max(value_max) AS "value max",
  sum(value_sum) / nullif(sum(value_count), 0) AS "value mean"
FROM r GROUP BY type ORDER BY 2 DESC, 1 LIMIT 20`,
              'table',
            ),
          ],
          description:
            'The 20 chosen types with the most events in the range: their share of all chosen events, and the count, sum, min, max and mean of their `value` (empty when none carried one).',
        },
      ],
    },
  ],
};
