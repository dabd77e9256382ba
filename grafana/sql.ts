/**
 * Dashboards over PostgreSQL (the business rollups) rather than Prometheus: the data source variable, the
 * dashboard's own query variables, panel targets as raw SQL, and the expansion of Grafana's SQL macros and
 * variables that lets a test run every query against a real database, as Grafana would send it.
 */
import type { Json } from './builder.js';
import { datasourceVariable } from './variables.js';

/** Grafana's core PostgreSQL data source plugin id (Grafana 10.4 and later; `postgres` before). */
export const POSTGRES_PLUGIN = 'grafana-postgresql-datasource';

/** What SQL panels and targets name as their data source: whatever the `datasource` variable holds. */
export const SQL_DATASOURCE = { type: POSTGRES_PLUGIN, uid: '${datasource}' } as const;

/** One SQL query of a panel, in Grafana's "code" mode. */
export interface SqlQuery {
  readonly sql: string;
  /** time_series: columns `time`, `metric`, `value` (long form, ordered by time); table: any columns. */
  readonly format: 'time_series' | 'table';
}

/** A query variable of a SQL dashboard: its values are the first column of `sql`. */
export interface SqlVariable {
  readonly name: string;
  readonly label: string;
  readonly description: string;
  readonly sql: string;
}

/** A SQL query with its legend-free shape. */
export function sql(text: string, format: SqlQuery['format'] = 'time_series'): SqlQuery {
  return { sql: text.trim(), format };
}

/** One target of a SQL panel. */
export function sqlTargetJson(query: SqlQuery, index: number): Json {
  return {
    refId: String.fromCharCode(65 + index),
    datasource: SQL_DATASOURCE,
    editorMode: 'code',
    format: query.format,
    rawQuery: true,
    rawSql: query.sql,
  };
}

/** The templating list of a SQL dashboard: the PostgreSQL data source, then its variables (multi, with All). */
export function sqlVariablesJson(variables: readonly SqlVariable[]): Json[] {
  return [
    datasourceVariable(POSTGRES_PLUGIN, 'The PostgreSQL database Floodgate writes to (its rollup tables).'),
    ...variables.map((v): Json => ({
      name: v.name,
      label: v.label,
      description: v.description,
      type: 'query',
      datasource: SQL_DATASOURCE,
      definition: v.sql,
      query: v.sql,
      // On time range change: the lists hold what the chosen range has.
      refresh: 2,
      regex: '',
      sort: 1,
      multi: true,
      includeAll: true,
      current: { selected: true, text: ['All'], value: ['$__all'] },
      options: [],
      hide: 0,
    })),
  ];
}

/** What a SQL dashboard's queries are expanded with. */
export interface SqlContext {
  readonly from: Date;
  readonly to: Date;
  /** Values of each variable (All = every value of its list). */
  readonly variables: Readonly<Record<string, readonly string[]>>;
}

const quote = (value: string) => `'${value.replaceAll("'", "''")}'`;
const timestamp = (at: Date) => quote(at.toISOString());

/**
 * `text` as Grafana's PostgreSQL data source sends it: `$__timeFilter(col)`, `$__timeFrom()` and `$__timeTo()`
 * become the range, and `$var` / `${var}` of a multi-value variable its values quoted and comma-separated (an
 * empty list becomes NULL, which matches nothing, as Grafana does).
 */
export function expandSql(text: string, context: SqlContext): string {
  return text
    .replace(
      /\$__timeFilter\(([^)]+)\)/g,
      (_, column: string) => `${column.trim()} BETWEEN ${timestamp(context.from)} AND ${timestamp(context.to)}`,
    )
    .replace(/\$__timeFrom\(\)/g, timestamp(context.from))
    .replace(/\$__timeTo\(\)/g, timestamp(context.to))
    .replace(/\$\{(\w+)\}|\$(\w+)/g, (match, braced: string | undefined, bare: string | undefined) => {
      const values = context.variables[braced ?? bare!];
      if (!values) throw new Error(`no value for ${match}`);
      return values.length === 0 ? 'NULL' : values.map(quote).join(',');
    });
}
