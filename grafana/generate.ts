/**
 * Grafana dashboards as code. `node --import tsx grafana/generate.ts` renders every dashboard source under
 * grafana/dashboards-src/ (one file per dashboard, each exporting `dashboard: DashboardSpec`) into
 * grafana/dashboards/*.json, which are committed (Grafana provisions them from disk) and kept equal to this
 * output by test/observability-static.test.ts. Adding a dashboard is adding one source file.
 * Panels prefer the recording rules of prometheus/rules/recording.yml.
 */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { dashboardJson, type DashboardSpec } from './builder.js';
import { withDashboardFilters } from './promql-filters.js';
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

/** Imports every dashboard source file, sorted by file name so the output is stable. */
async function loadDashboards(): Promise<DashboardSpec[]> {
  const files = (await readdir(SOURCES)).filter((f) => /\.[cm]?[jt]s$/.test(f) && !f.endsWith('.d.ts')).sort();
  const specs: DashboardSpec[] = [];
  for (const file of files) {
    const module = (await import(new URL(file, SOURCES).href)) as { dashboard?: DashboardSpec };
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
export function dashboards(): readonly DashboardSpec[] {
  return loaded;
}

/** File name → JSON text (2-space indent, trailing newline) as committed under grafana/dashboards/. */
export function renderDashboards(): Map<string, string> {
  return new Map(dashboards().map((d) => [d.file, `${JSON.stringify(dashboardJson(d), null, 2)}\n`]));
}

/** Every panel query with its dashboard and panel title, so a live test can run each one against Prometheus. */
export function allDashboardQueries(): DashboardQuery[] {
  return dashboards().flatMap((d) =>
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
