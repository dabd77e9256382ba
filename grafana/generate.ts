/**
 * Grafana dashboards as code. `node --import tsx grafana/generate.ts` renders every dashboard source under
 * grafana/dashboards-src/ (one file per dashboard, each exporting `dashboard: DashboardSpec`) into
 * grafana/dashboards/*.json, which are committed (Grafana provisions them from disk) and kept equal to this
 * output by test/observability-static.test.ts. Adding a dashboard is adding one source file.
 * Panels prefer the recording rules of prometheus/rules/recording.yml.
 */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { dashboardJson, isSqlDashboard, type AnyDashboardSpec, type DashboardSpec, type SqlDashboardSpec } from './builder.js';
import { withDashboardFilters } from './promql-filters.js';
import type { SqlQuery } from './sql.js';
import { expandAll } from './variables.js';

/** One panel query with where it lives, for tests that run every query against a real Prometheus. */
export interface DashboardQuery {
  readonly dashboard: string;
  readonly panel: string;
  /** The query as Prometheus receives it with every variable set to "All": runnable as-is. */
  readonly expr: string;
  /** The query as stored in the dashboard, with `$job` and `$instance`. */
  readonly template: string;
  readonly legend: string;
}

const SOURCES = new URL('./dashboards-src/', import.meta.url);

/** One SQL query of a PostgreSQL dashboard (a panel's, or a variable's), for tests that run it against PostgreSQL. */
export interface SqlDashboardQuery extends SqlQuery {
  readonly dashboard: string;
  /** The panel's title, or `$name` for a variable's query. */
  readonly panel: string;
}

/** Imports every dashboard source file, sorted by file name so the output is stable. */
async function loadDashboards(): Promise<AnyDashboardSpec[]> {
  const files = (await readdir(SOURCES)).filter((f) => /\.[cm]?[jt]s$/.test(f) && !f.endsWith('.d.ts')).sort();
  const specs: AnyDashboardSpec[] = [];
  for (const file of files) {
    const module = (await import(new URL(file, SOURCES).href)) as { dashboard?: AnyDashboardSpec };
    if (!module.dashboard) throw new Error(`grafana/dashboards-src/${file} must export \`dashboard: DashboardSpec\``);
    specs.push(module.dashboard);
  }
  const files_ = specs.map((s) => s.file);
  const clash = files_.find((f, i) => files_.indexOf(f) !== i);
  if (clash) throw new Error(`two dashboard sources write grafana/dashboards/${clash}`);
  return specs;
}

const loaded = await loadDashboards();

/** Every dashboard, in the order of their source files. */
export function dashboards(): readonly AnyDashboardSpec[] {
  return loaded;
}

/** The dashboards over Prometheus. */
export function prometheusDashboards(): readonly DashboardSpec[] {
  return loaded.filter((d): d is DashboardSpec => !isSqlDashboard(d));
}

/** The dashboards over PostgreSQL. */
export function sqlDashboards(): readonly SqlDashboardSpec[] {
  return loaded.filter(isSqlDashboard);
}

/** File name → JSON text (2-space indent, trailing newline) as committed under grafana/dashboards/. */
export function renderDashboards(): Map<string, string> {
  return new Map(dashboards().map((d) => [d.file, `${JSON.stringify(dashboardJson(d), null, 2)}\n`]));
}

/** Every PromQL panel query with its dashboard and panel title, so a live test can run each one against Prometheus. */
export function allDashboardQueries(): DashboardQuery[] {
  return prometheusDashboards().flatMap((d) =>
    d.rows.flatMap((row) =>
      row.panels.flatMap((panel) =>
        panel.queries.map((query) => {
          const template = withDashboardFilters(query.expr);
          return { dashboard: d.title, panel: panel.title, expr: expandAll(template), template, legend: query.legend };
        }),
      ),
    ),
  );
}

/** Every SQL query of the PostgreSQL dashboards (variables first, then panels), for a test against PostgreSQL. */
export function allSqlQueries(): SqlDashboardQuery[] {
  return sqlDashboards().flatMap((d) => [
    ...d.variables.map((v) => ({ dashboard: d.title, panel: `$${v.name}`, sql: v.sql, format: 'table' as const })),
    ...d.rows.flatMap((row) =>
      row.panels.flatMap((panel) => panel.queries.map((query) => ({ dashboard: d.title, panel: panel.title, ...query }))),
    ),
  ]);
}

/** Writes every dashboard to `dir` (default grafana/dashboards next to this file). */
export async function writeDashboards(dir = new URL('./dashboards/', import.meta.url)): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const written: string[] = [];
  for (const [file, text] of renderDashboards()) {
    await writeFile(new URL(file, dir), text);
    written.push(file);
  }
  return written;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const files = await writeDashboards();
  console.log(`wrote ${files.map((f) => `grafana/dashboards/${f}`).join(', ')}`);
}
