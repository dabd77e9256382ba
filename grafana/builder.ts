/**
 * A small typed builder for Grafana dashboards: specs in, Grafana JSON model (schemaVersion 39, Grafana 11) out.
 * Each dashboard is one file under grafana/dashboards-src/ exporting `dashboard: DashboardSpec`; generate.ts
 * renders them all. Every panel and query reads the `${datasource}` variable, and every series selector is
 * narrowed by the `job` and `instance` variables (see promql-filters.ts), so the JSON imports into any Grafana.
 * A dashboard over PostgreSQL instead (SqlDashboardSpec, see sql.ts) has SQL targets and its own variables.
 */
import { DATASOURCE, dashboardVariables } from './variables.js';
import { withDashboardFilters } from './promql-filters.js';
import { SQL_DATASOURCE, sqlTargetJson, sqlVariablesJson, type SqlQuery, type SqlVariable } from './sql.js';

/** Grafana unit ids used here. */
export type Unit = 'reqps' | 'ops' | 's' | 'percentunit' | 'bytes' | 'Bps' | 'short' | 'none' | 'dtdurations';

/** One PromQL query of a panel and the legend of the series it returns. */
export interface Query {
  readonly expr: string;
  readonly legend: string;
}

/** A colour step: from `value` upwards (null = from minus infinity). */
export interface Threshold {
  readonly value: number | null;
  readonly color: string;
}

/** Text and colour shown for one exact value (state timelines, stats). */
export interface ValueText {
  readonly value: number;
  readonly text: string;
  readonly color: string;
}

/** What a panel shows and how to read it; its queries are PromQL, or SQL on a SqlDashboardSpec. */
export interface PanelSpec<Q = Query> {
  readonly title: string;
  /** Shown in the panel's (i) tooltip: how an on-call engineer reads it. */
  readonly description: string;
  readonly kind?: 'timeseries' | 'stat' | 'state-timeline' | 'table';
  readonly queries: readonly Q[];
  readonly unit?: Unit;
  /** Grid columns out of 24 (default 12) and rows (default 8). */
  readonly width?: number;
  readonly height?: number;
  readonly min?: number;
  readonly max?: number;
  readonly decimals?: number;
  readonly stack?: boolean;
  /** Colour steps; on time series they are also drawn as dashed lines (targets, alert thresholds). */
  readonly thresholds?: readonly Threshold[];
  readonly valueTexts?: readonly ValueText[];
  /** Stat panels: show the series name (legend) instead of the value, e.g. the active mode. */
  readonly showName?: boolean;
  /** Shown instead of "No data" when the panel is empty, e.g. what must be installed for it to have data. */
  readonly noValue?: string;
}

/** A titled row of panels. */
export interface RowSpec<Q = Query> {
  readonly title: string;
  readonly panels: readonly PanelSpec<Q>[];
}

/** One dashboard: its file name under grafana/dashboards/ and its rows. */
export interface DashboardSpec {
  readonly file: string;
  readonly uid: string;
  readonly title: string;
  readonly description: string;
  readonly rows: readonly RowSpec[];
  /** Adds the `shard` variable (see variables.ts); its panels select `shard=~"$shard"` themselves. */
  readonly shardVariable?: boolean;
}

/** A dashboard over the PostgreSQL data source: SQL panels and its own query variables (sql.ts). */
export interface SqlDashboardSpec {
  readonly datasource: 'postgres';
  readonly file: string;
  readonly uid: string;
  readonly title: string;
  readonly description: string;
  readonly variables: readonly SqlVariable[];
  readonly rows: readonly RowSpec<SqlQuery>[];
}

/** Any dashboard a source file under grafana/dashboards-src/ may export. */
export type AnyDashboardSpec = DashboardSpec | SqlDashboardSpec;

/** Whether a dashboard reads PostgreSQL rather than Prometheus. */
export function isSqlDashboard(spec: AnyDashboardSpec): spec is SqlDashboardSpec {
  return 'datasource' in spec && spec.datasource === 'postgres';
}

/** The selector of the ingest route, as recorded by the API's request metrics. */
export const INGEST_ROUTE = 'route="/v1/events"';

export const GREEN = 'green';
export const YELLOW = 'yellow';
export const ORANGE = 'orange';
export const RED = 'red';

const GRID_COLUMNS = 24;

/** A query with its legend. */
export function q(expr: string, legend = ''): Query {
  return { expr, legend };
}

/** Green below `warn`, red from `bad` (and orange in between when given). */
export function steps(bad: number, warn?: number): Threshold[] {
  const list: Threshold[] = [{ value: null, color: GREEN }];
  if (warn !== undefined) list.push({ value: warn, color: ORANGE });
  list.push({ value: bad, color: RED });
  return list;
}

/** JSON as Grafana reads it. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

interface GridPos {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** Field defaults shared by every panel kind: unit, bounds, thresholds and value mappings. */
function fieldDefaults(spec: PanelSpec<unknown>): { [key: string]: Json } {
  const defaults: { [key: string]: Json } = { unit: spec.unit ?? 'short' };
  if (spec.min !== undefined) defaults.min = spec.min;
  if (spec.max !== undefined) defaults.max = spec.max;
  if (spec.decimals !== undefined) defaults.decimals = spec.decimals;
  if (spec.noValue !== undefined) defaults.noValue = spec.noValue;
  defaults.thresholds = {
    mode: 'absolute',
    steps: (spec.thresholds ?? [{ value: null, color: GREEN }]).map((t) => ({ color: t.color, value: t.value })),
  };
  if (spec.valueTexts) {
    const options: { [key: string]: Json } = {};
    spec.valueTexts.forEach((v, index) => {
      options[String(v.value)] = { text: v.text, color: v.color, index };
    });
    defaults.mappings = [{ type: 'value', options }];
    defaults.color = { mode: 'thresholds' };
  }
  return defaults;
}

/** The kind-specific part of a panel: `custom` field config and panel options. */
function kindOptions(spec: PanelSpec<unknown>): { custom?: Json; options: Json } {
  const kind = spec.kind ?? 'timeseries';
  if (kind === 'table') {
    return {
      custom: { align: 'auto', cellOptions: { type: 'auto' }, inspect: false },
      options: { showHeader: true, cellHeight: 'sm', footer: { show: false, reducer: ['sum'], countRows: false, fields: '' } },
    };
  }
  if (kind === 'timeseries') {
    return {
      custom: {
        drawStyle: 'line',
        lineWidth: 1,
        fillOpacity: spec.stack ? 30 : 8,
        showPoints: 'never',
        spanNulls: false,
        stacking: { mode: spec.stack ? 'normal' : 'none', group: 'A' },
        thresholdsStyle: { mode: spec.thresholds ? 'dashed' : 'off' },
      },
      options: {
        legend: { showLegend: true, displayMode: 'table', placement: 'bottom', calcs: ['lastNotNull', 'max'] },
        tooltip: { mode: 'multi', sort: 'desc' },
      },
    };
  }
  if (kind === 'stat') {
    return {
      options: {
        reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
        colorMode: spec.thresholds || spec.valueTexts ? 'background' : 'value',
        graphMode: spec.valueTexts ? 'none' : 'area',
        textMode: spec.showName ? 'name' : 'auto',
        justifyMode: 'auto',
        orientation: 'auto',
      },
    };
  }
  return {
    custom: { fillOpacity: 80, lineWidth: 0 },
    options: {
      showValue: 'auto',
      mergeValues: true,
      rowHeight: 0.9,
      alignValue: 'left',
      legend: { showLegend: true, displayMode: 'list', placement: 'bottom' },
      tooltip: { mode: 'single', sort: 'none' },
    },
  };
}

/** One query target of a panel, its series narrowed by the dashboard's job and instance variables. */
function targetJson(query: Query, index: number): Json {
  return {
    refId: String.fromCharCode(65 + index),
    datasource: DATASOURCE,
    expr: withDashboardFilters(query.expr),
    legendFormat: query.legend || '__auto',
    range: true,
    instant: false,
  };
}

/** How a dashboard's panels name their data source and render their queries. */
interface Source<Q> {
  readonly datasource: Json;
  readonly target: (query: Q, index: number) => Json;
}

const PROMETHEUS_SOURCE: Source<Query> = { datasource: DATASOURCE, target: targetJson };
const SQL_SOURCE: Source<SqlQuery> = { datasource: SQL_DATASOURCE, target: sqlTargetJson };

/** The Grafana JSON model of one panel at `gridPos`. */
function panelJson<Q>(spec: PanelSpec<Q>, id: number, gridPos: GridPos, source: Source<Q>): Json {
  const defaults = fieldDefaults(spec);
  const { custom, options } = kindOptions(spec);
  if (custom !== undefined) defaults.custom = custom;
  return {
    id,
    type: spec.kind ?? 'timeseries',
    title: spec.title,
    description: spec.description,
    datasource: source.datasource,
    gridPos: { ...gridPos },
    fieldConfig: { defaults, overrides: [] },
    options,
    targets: spec.queries.map(source.target),
  };
}

/** Row headers and panels, laid out left to right within a row; rows stack downwards. */
function layout<Q>(rows: readonly RowSpec<Q>[], source: Source<Q>): Json[] {
  const panels: Json[] = [];
  let id = 1;
  let y = 0;
  for (const row of rows) {
    panels.push({ id: id++, type: 'row', title: row.title, collapsed: false, gridPos: { x: 0, y, w: GRID_COLUMNS, h: 1 }, panels: [] });
    y += 1;
    let x = 0;
    let lineHeight = 0;
    for (const panel of row.panels) {
      const w = panel.width ?? 12;
      const h = panel.height ?? 8;
      if (x + w > GRID_COLUMNS) {
        y += lineHeight;
        x = 0;
        lineHeight = 0;
      }
      panels.push(panelJson(panel, id++, { x, y, w, h }, source));
      x += w;
      lineHeight = Math.max(lineHeight, h);
    }
    y += lineHeight;
  }
  return panels;
}

/** The Grafana JSON model of one dashboard. */
export function dashboardJson(spec: AnyDashboardSpec): Json {
  const sqlSpec = isSqlDashboard(spec) ? spec : undefined;
  return {
    uid: spec.uid,
    title: spec.title,
    description: spec.description,
    tags: ['floodgate'],
    timezone: 'utc',
    editable: true,
    graphTooltip: 1,
    schemaVersion: 39,
    version: 1,
    refresh: '30s',
    time: { from: 'now-1h', to: 'now' },
    timepicker: {},
    fiscalYearStartMonth: 0,
    liveNow: false,
    templating: { list: isSqlDashboard(spec) ? sqlVariablesJson(spec.variables) : dashboardVariables(spec.shardVariable === true) },
    annotations: {
      list: [
        {
          builtIn: 1,
          datasource: { type: 'grafana', uid: '-- Grafana --' },
          enable: true,
          hide: true,
          iconColor: 'rgba(0, 211, 255, 1)',
          name: 'Annotations & Alerts',
          type: 'dashboard',
        },
      ],
    },
    // includeVars: moving to another Floodgate dashboard keeps the chosen data source, job and instance.
    links: [{ type: 'dashboards', title: 'Floodgate', tags: ['floodgate'], asDropdown: true, keepTime: true, includeVars: true }],
    panels: sqlSpec ? layout(sqlSpec.rows, SQL_SOURCE) : layout((spec as DashboardSpec).rows, PROMETHEUS_SOURCE),
  };
}
