/**
 * The template variables every Floodgate dashboard carries, so the JSON imports into any Grafana: the Prometheus
 * data source is chosen from a list (no hard-coded uid), and `job` / `instance` select which scrape targets the
 * panels read. "All" is the default; its value is a regex matching every target.
 */
import type { Json } from './builder.js';

/** What panels and targets name as their data source: whatever the `datasource` variable holds. */
export const DATASOURCE = { type: 'prometheus', uid: '${datasource}' } as const;

/** The regex Grafana substitutes for a variable set to "All". */
export const ALL_VALUE = '.*';

/**
 * A metric every Floodgate process exports (API and worker alike) and nothing else does: the `job` and
 * `instance` lists are read from its labels, so they list Floodgate targets only.
 */
export const TARGET_METRIC = 'nodejs_eventloop_utilization_ratio';

/** The variables substituted into queries, in the order Grafana shows them (`shard` only where a dashboard has it). */
export const FILTER_VARIABLES = ['job', 'instance', 'shard'] as const;

/**
 * The metric the `shard` variable lists its values from: every stream shard has a length series, labelled with
 * its index (a single Redis or stream is shard "0"). Panels over per-shard series select `shard=~"$shard"`.
 */
export const SHARD_METRIC = 'floodgate_redis_stream_length';

/** A `label_values()` query variable with multi-select and an "All" option (the default). */
function labelVariable(name: string, label: string, query: string, description: string): Json {
  return {
    name,
    label,
    description,
    type: 'query',
    datasource: DATASOURCE,
    definition: query,
    query: { qryType: 1, query, refId: 'PrometheusVariableQueryEditor-VariableQuery' },
    refresh: 2,
    regex: '',
    sort: 1,
    multi: true,
    includeAll: true,
    allValue: ALL_VALUE,
    current: { selected: true, text: ['All'], value: ['$__all'] },
    options: [],
    hide: 0,
  };
}

/** The `datasource` variable: a choice among the data sources of plugin `plugin` (the default one first). */
export function datasourceVariable(plugin: string, description: string): Json {
  return {
    name: 'datasource',
    label: 'Data source',
    description,
    type: 'datasource',
    query: plugin,
    regex: '',
    current: {},
    options: [],
    refresh: 1,
    multi: false,
    includeAll: false,
    hide: 0,
  };
}

/** The templating list of a dashboard: data source, job, instance, and `shard` when `withShard`. */
export function dashboardVariables(withShard = false): Json[] {
  const shard = labelVariable(
    'shard',
    'Shard',
    `label_values(${SHARD_METRIC}{job=~"$job"}, shard)`,
    'Stream shards (STREAM_SHARDS; one Redis stream each, "0" when the queue is not sharded). Narrows the per-shard panels only.',
  );
  return [
    datasourceVariable('prometheus', 'The Prometheus that scrapes Floodgate and loads its recording rules (prometheus/rules/).'),
    labelVariable(
      'job',
      'Job',
      `label_values(${TARGET_METRIC}, job)`,
      'Scrape jobs of Floodgate processes (API and worker). Panels built on recording rules are narrowed by job only: the rules add up the instances of a job.',
    ),
    labelVariable(
      'instance',
      'Instance',
      `label_values(${TARGET_METRIC}{job=~"$job"}, instance)`,
      'Scrape targets within the chosen jobs. Narrows the panels that read per-process series (gauges, process metrics); rates and percentiles from recording rules cover the whole job.',
    ),
    ...(withShard ? [shard] : []),
  ];
}

/** `expr` as Prometheus receives it when every variable is set to "All" (what a test can run as-is). */
export function expandAll(expr: string): string {
  return FILTER_VARIABLES.reduce((text, name) => text.replaceAll(`$${name}`, ALL_VALUE), expr);
}
