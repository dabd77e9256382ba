/**
 * Grafana dashboards as code. `node --import tsx grafana/generate.ts` writes grafana/dashboards/*.json, which
 * are committed (Grafana provisions them from disk) and kept equal to this file's output by
 * test/observability-static.test.ts. Panels prefer the recording rules of prometheus/rules/recording.yml;
 * queries use no Grafana variables, so every one of them runs as-is against Prometheus
 * (see allDashboardQueries()).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';

// ---------------------------------------------------------------------------------------------------------
// A small typed builder: specs in, Grafana JSON model (schemaVersion 39, Grafana 11) out.
// ---------------------------------------------------------------------------------------------------------

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

/** What a panel shows and how to read it. */
export interface PanelSpec {
  readonly title: string;
  /** Shown in the panel's (i) tooltip: how an on-call engineer reads it. */
  readonly description: string;
  readonly kind?: 'timeseries' | 'stat' | 'state-timeline';
  readonly queries: readonly Query[];
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
}

/** A titled row of panels. */
export interface RowSpec {
  readonly title: string;
  readonly panels: readonly PanelSpec[];
}

/** One dashboard: its file name under grafana/dashboards/ and its rows. */
export interface DashboardSpec {
  readonly file: string;
  readonly uid: string;
  readonly title: string;
  readonly description: string;
  readonly rows: readonly RowSpec[];
}

/** One panel query with where it lives, for tests that run every query against a real Prometheus. */
export interface DashboardQuery {
  readonly dashboard: string;
  readonly panel: string;
  readonly expr: string;
  readonly legend: string;
}

const DATASOURCE = { type: 'prometheus', uid: 'prometheus' } as const;
const GRID_COLUMNS = 24;
const GREEN = 'green';
const YELLOW = 'yellow';
const ORANGE = 'orange';
const RED = 'red';

/** A query with its legend. */
function q(expr: string, legend = ''): Query {
  return { expr, legend };
}

/** Green below `warn`, red from `bad` (and orange in between when given). */
function steps(bad: number, warn?: number): Threshold[] {
  const list: Threshold[] = [{ value: null, color: GREEN }];
  if (warn !== undefined) list.push({ value: warn, color: ORANGE });
  list.push({ value: bad, color: RED });
  return list;
}

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

function panelJson(spec: PanelSpec, id: number, gridPos: { x: number; y: number; w: number; h: number }): Json {
  const kind = spec.kind ?? 'timeseries';
  const defaults: { [key: string]: Json } = { unit: spec.unit ?? 'short' };
  if (spec.min !== undefined) defaults.min = spec.min;
  if (spec.max !== undefined) defaults.max = spec.max;
  if (spec.decimals !== undefined) defaults.decimals = spec.decimals;
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
  let options: Json;
  if (kind === 'timeseries') {
    defaults.custom = {
      drawStyle: 'line',
      lineWidth: 1,
      fillOpacity: spec.stack ? 30 : 8,
      showPoints: 'never',
      spanNulls: false,
      stacking: { mode: spec.stack ? 'normal' : 'none', group: 'A' },
      thresholdsStyle: { mode: spec.thresholds ? 'dashed' : 'off' },
    };
    options = {
      legend: { showLegend: true, displayMode: 'table', placement: 'bottom', calcs: ['lastNotNull', 'max'] },
      tooltip: { mode: 'multi', sort: 'desc' },
    };
  } else if (kind === 'stat') {
    options = {
      reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
      colorMode: spec.thresholds || spec.valueTexts ? 'background' : 'value',
      graphMode: spec.valueTexts ? 'none' : 'area',
      textMode: spec.showName ? 'name' : 'auto',
      justifyMode: 'auto',
      orientation: 'auto',
    };
  } else {
    defaults.custom = { fillOpacity: 80, lineWidth: 0 };
    options = {
      showValue: 'auto',
      mergeValues: true,
      rowHeight: 0.9,
      alignValue: 'left',
      legend: { showLegend: true, displayMode: 'list', placement: 'bottom' },
      tooltip: { mode: 'single', sort: 'none' },
    };
  }
  return {
    id,
    type: kind,
    title: spec.title,
    description: spec.description,
    datasource: DATASOURCE,
    gridPos,
    fieldConfig: { defaults, overrides: [] },
    options,
    targets: spec.queries.map((query, i) => ({
      refId: String.fromCharCode(65 + i),
      datasource: DATASOURCE,
      expr: query.expr,
      legendFormat: query.legend || '__auto',
      range: true,
      instant: false,
    })),
  };
}

/** The Grafana JSON model of one dashboard; panels flow left to right, rows stack downwards. */
export function dashboardJson(spec: DashboardSpec): Json {
  const panels: Json[] = [];
  let id = 1;
  let y = 0;
  for (const row of spec.rows) {
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
      panels.push(panelJson(panel, id++, { x, y, w, h }));
      x += w;
      lineHeight = Math.max(lineHeight, h);
    }
    y += lineHeight;
  }
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
    templating: { list: [] },
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
    links: [{ type: 'dashboards', title: 'Floodgate', tags: ['floodgate'], asDropdown: true, keepTime: true, includeVars: false }],
    panels,
  };
}

// ---------------------------------------------------------------------------------------------------------
// The dashboards.
// ---------------------------------------------------------------------------------------------------------

const INGEST = '/v1/events';
const ROUTE = `route="${INGEST}"`;

const ingestOverview: DashboardSpec = {
  file: 'ingest-overview.json',
  uid: 'floodgate-ingest-overview',
  title: 'Floodgate / Ingest overview',
  description: 'Golden signals of the API: traffic, errors, latency and saturation, per route and priority.',
  rows: [
    {
      title: 'Service level: POST /v1/events',
      panels: [
        {
          title: 'Availability, last hour',
          kind: 'stat',
          width: 6,
          height: 5,
          unit: 'percentunit',
          decimals: 3,
          queries: [q('1 - floodgate:slo_availability_errors:ratio_rate1h', 'availability')],
          thresholds: [
            { value: null, color: RED },
            { value: 0.995, color: ORANGE },
            { value: 0.999, color: GREEN },
          ],
          description:
            'Share of ingest requests that did not fail with internal_error or dependency_unavailable over the last hour. ' +
            'SLO: 99.9 %. Deliberate shedding (503 overloaded) and client errors (4xx) do not count against it. Red: below the SLO.',
        },
        {
          title: 'Under 50 ms, last hour',
          kind: 'stat',
          width: 6,
          height: 5,
          unit: 'percentunit',
          decimals: 2,
          queries: [q('1 - floodgate:slo_latency_errors:ratio_rate1h', 'under 50 ms')],
          thresholds: [
            { value: null, color: RED },
            { value: 0.95, color: ORANGE },
            { value: 0.99, color: GREEN },
          ],
          description: 'Share of ingest requests answered within 50 ms over the last hour (histogram bucket le="0.05"). SLO: 99 %.',
        },
        {
          title: 'Accepted events/s',
          kind: 'stat',
          width: 6,
          height: 5,
          unit: 'ops',
          queries: [q('floodgate:events_accepted:rate1m', 'events/s')],
          description: 'Events answered 202 per second, all priorities. A sudden drop with steady requests means clients are being refused.',
        },
        {
          title: 'Requests in flight',
          kind: 'stat',
          width: 6,
          height: 5,
          unit: 'short',
          queries: [q('sum(floodgate_http_requests_in_flight)', 'in flight')],
          thresholds: steps(1000, 200),
          description:
            'Requests being served right now, summed over all API processes. Rising in-flight with flat traffic means requests are waiting (usually on Redis). ' +
            'The shedder refuses even critical requests past its hard in-flight limit.',
        },
        {
          title: 'Error budget burn rate',
          width: 24,
          unit: 'short',
          min: 0,
          queries: [
            q('floodgate:slo_availability_errors:ratio_rate1h / 0.001', 'availability 1h'),
            q('floodgate:slo_availability_errors:ratio_rate5m / 0.001', 'availability 5m'),
            q('floodgate:slo_latency_errors:ratio_rate1h / 0.01', 'latency 1h'),
            q('floodgate:slo_latency_errors:ratio_rate5m / 0.01', 'latency 5m'),
          ],
          thresholds: [
            { value: null, color: GREEN },
            { value: 6, color: ORANGE },
            { value: 14.4, color: RED },
          ],
          description:
            'How many times faster than sustainable the error budget is being spent (1 = exactly the budget over 30 days). ' +
            'The fast-burn alerts page when both the 1h and 5m lines are above 14.4; the slow-burn alerts open a ticket at 6 over 6h and 30m.',
        },
      ],
    },
    {
      title: 'Traffic',
      panels: [
        {
          title: 'Requests per second by route',
          unit: 'reqps',
          min: 0,
          queries: [q('route:floodgate_http_requests:rate1m', '{{route}}')],
          description: 'All HTTP requests per second, by matched route ("unmatched" = no route: 404s). Includes shed and failed requests.',
        },
        {
          title: 'Responses by status: POST /v1/events',
          unit: 'reqps',
          min: 0,
          stack: true,
          queries: [q(`route_status:floodgate_http_requests:rate1m{${ROUTE}}`, '{{status}}')],
          description:
            'Ingest answers per second by HTTP status, stacked. 202 is success; 503 is either shedding (overloaded, intended) or Redis trouble ' +
            '(dependency_unavailable): the Errors row tells them apart.',
        },
        {
          title: 'Accepted events per second by priority',
          unit: 'ops',
          min: 0,
          stack: true,
          queries: [q('priority:floodgate_events_accepted:rate1m', '{{priority}}')],
          description: 'Events accepted (202) per second by priority class, stacked. Under load shedding low goes first, then normal; critical should stay flat.',
        },
        {
          title: 'Ingest answers by priority and status',
          unit: 'reqps',
          min: 0,
          queries: [q('priority_status:floodgate_http_requests:rate1m', '{{priority}} {{status}}')],
          description:
            'POST /v1/events answers per second by the class of the request (X-Priority or the key default) and HTTP status. ' +
            'critical 202 should stay flat through an incident; low 503 rising first, then normal 503, is the shedder doing its job; critical 503 means a hard limit or an outage.',
        },
        {
          title: 'Rejected events per second by reason',
          unit: 'ops',
          min: 0,
          queries: [q('reason:floodgate_events_rejected:rate1m', '{{reason}}')],
          description: 'Events refused by validation inside otherwise well-formed requests. A rise usually means one client shipped a bad build; check the logs by tenant.',
        },
        {
          title: 'Events per request',
          unit: 'short',
          min: 0,
          queries: [q('floodgate:request_events:mean1m', 'mean events per accepted request')],
          description: 'Mean batch size of accepted requests. A drop to 1 with the same event rate multiplies request overhead: expect higher CPU and latency.',
        },
        {
          title: 'Request and response bytes',
          unit: 'Bps',
          min: 0,
          queries: [q('route:floodgate_http_request_bytes:rate1m', 'in {{route}}'), q('route:floodgate_http_response_bytes:rate1m', 'out {{route}}')],
          description: 'Body bytes per second as sent on the wire (compressed bodies count compressed). Large jumps with flat request rates mean bigger batches or payloads.',
        },
      ],
    },
    {
      title: 'Errors',
      panels: [
        {
          title: 'Errors by route and code',
          unit: 'reqps',
          min: 0,
          queries: [q('route_code:floodgate_http_errors:rate1m', '{{route}} {{code}}')],
          description:
            'Error answers per second by stable error code (error table in docs/api.md). internal_error and dependency_unavailable spend the availability budget; ' +
            'overloaded is deliberate shedding; 4xx codes are client mistakes.',
        },
        {
          title: 'Budget-spending error ratio: POST /v1/events',
          unit: 'percentunit',
          min: 0,
          queries: [
            q('floodgate:slo_availability_errors:ratio_rate5m', '5m'),
            q('floodgate:slo_availability_errors:ratio_rate1h', '1h'),
          ],
          thresholds: [
            { value: null, color: GREEN },
            { value: 0.006, color: ORANGE },
            { value: 0.0144, color: RED },
          ],
          description: 'Share of ingest requests failing with internal_error or dependency_unavailable. Dashed lines: the slow (0.6 %) and fast (1.44 %) burn thresholds.',
        },
      ],
    },
    {
      title: 'Latency',
      panels: [
        {
          title: 'Latency p50 and p99 by route',
          unit: 's',
          min: 0,
          queries: [
            q('route:floodgate_http_request_duration_seconds:p50_1m', 'p50 {{route}}'),
            q('route:floodgate_http_request_duration_seconds:p99_1m', 'p99 {{route}}'),
          ],
          thresholds: steps(0.05),
          description:
            'Request duration percentiles per route over 1 minute, from the histogram (all statuses, shed requests included). ' +
            'The dashed line is the 50 ms latency SLO; the p99 of /v1/events above it for long spends the latency budget.',
        },
        {
          title: 'Ingest latency p50 and p99 by priority',
          unit: 's',
          min: 0,
          queries: [
            q('priority:floodgate_http_request_duration_seconds:p50_1m', 'p50 {{priority}}'),
            q('priority:floodgate_http_request_duration_seconds:p99_1m', 'p99 {{priority}}'),
          ],
          thresholds: steps(0.05),
          description:
            'POST /v1/events duration percentiles by class over 1 minute, shed answers included (they are fast, so heavy shedding pulls low and normal down). ' +
            'Critical above the 50 ms line while low and normal are being shed means the pressure is not from traffic volume: look at Redis write latency.',
        },
        {
          title: 'Requests in flight',
          unit: 'short',
          min: 0,
          queries: [q('sum(floodgate_http_requests_in_flight)', 'in flight')],
          description: "Concurrent requests (Little's law: rate x latency). Grows before latency does when something downstream slows down.",
        },
        {
          title: 'Redis write latency (XADD)',
          unit: 's',
          min: 0,
          queries: [
            q('outcome:floodgate_redis_write_duration_seconds:p50_1m', 'p50 {{outcome}}'),
            q('outcome:floodgate_redis_write_duration_seconds:p99_1m', 'p99 {{outcome}}'),
          ],
          description:
            'Time for Redis to acknowledge one ingest write, as the API sees it. The 202 waits for this, so it is the floor of ingest latency. ' +
            'outcome="error" durations near REDIS_WRITE_TIMEOUT_MS mean timeouts.',
        },
        {
          title: 'Redis writes by outcome',
          unit: 'ops',
          min: 0,
          queries: [q('outcome:floodgate_redis_writes:rate1m', '{{outcome}}')],
          description: 'XADDs per second, ok and error. Any error here becomes a 503 dependency_unavailable for the client.',
        },
      ],
    },
    {
      title: 'Processes (API and worker)',
      panels: [
        {
          title: 'Event-loop delay p99',
          unit: 's',
          min: 0,
          queries: [q('max by (role) (nodejs_eventloop_lag_p99_seconds)', '{{role}}')],
          thresholds: steps(0.1),
          description:
            'How late timers fire: the time a ready callback waits for the event loop. Every request waits that long; above 100 ms (dashed, the shedder\'s backstop target) the shedder acts on it. ' +
            'For the API the cluster endpoint averages its processes, so one stuck process shows diluted.',
        },
        {
          title: 'Event-loop utilisation',
          unit: 'percentunit',
          min: 0,
          queries: [q('max by (role) (nodejs_eventloop_utilization_ratio)', '{{role}}')],
          description:
            'Share of time the event loop was busy since the previous scrape; near 1 means the process is CPU-bound on the main thread. ' +
            'With several API processes the aggregated endpoint adds them up, so the API line can exceed 1 (1 per busy process).',
        },
        {
          title: 'CPU',
          unit: 'percentunit',
          min: 0,
          queries: [q('role:process_cpu_seconds:rate1m', '{{role}}')],
          description: 'CPU seconds per second (1 = one core fully used), summed over all processes of the role.',
        },
        {
          title: 'Memory: RSS and heap',
          unit: 'bytes',
          min: 0,
          queries: [
            q('sum by (role) (process_resident_memory_bytes)', 'RSS {{role}}'),
            q('sum by (role) (nodejs_heap_size_used_bytes)', 'heap used {{role}}'),
            q('sum by (role) (nodejs_heap_size_total_bytes)', 'heap total {{role}}'),
          ],
          description: 'Resident memory and V8 heap per role (API summed across processes). Steady growth of heap used across GCs is a leak; RSS far above heap is buffers (large bodies, COPY).',
        },
        {
          title: 'Time in garbage collection',
          unit: 'percentunit',
          min: 0,
          stack: true,
          queries: [q('role_kind:nodejs_gc_duration_seconds:rate1m', '{{role}} {{kind}}')],
          description: 'Share of wall time spent in GC pauses, by GC kind. More than a few percent adds directly to latency; major GCs point at heap pressure.',
        },
      ],
    },
  ],
};

const pipeline: DashboardSpec = {
  file: 'pipeline.json',
  uid: 'floodgate-pipeline',
  title: 'Floodgate / Pipeline',
  description: 'From the Redis stream to Postgres: backlog, consumer group, flushes and time to durable.',
  rows: [
    {
      title: 'Durability',
      panels: [
        {
          title: 'Time to durable p99',
          kind: 'stat',
          width: 6,
          unit: 's',
          queries: [q('floodgate:time_to_durable_seconds:p99_1m', 'p99')],
          thresholds: steps(2, 1),
          description: 'p99 of receipt at the API to commit in Postgres over the last minute. Red above 2 s: FloodgateTimeToDurableHigh fires after 5 minutes of that.',
        },
        {
          title: 'Time to durable p50 and p99',
          width: 18,
          unit: 's',
          min: 0,
          queries: [q('floodgate:time_to_durable_seconds:p50_1m', 'p50'), q('floodgate:time_to_durable_seconds:p99_1m', 'p99')],
          thresholds: steps(2),
          description:
            'Per event, from receipt at the API to commit in Postgres. p50 is normally about FLUSH_INTERVAL_MS plus the flush; a p99 that climbs steadily means ' +
            'the backlog is growing (see the stream row). No data while the worker commits nothing: check lag and flush errors then.',
        },
        {
          title: 'Accepted vs stored events per second',
          width: 24,
          unit: 'ops',
          min: 0,
          queries: [
            q('floodgate:events_accepted:rate1m', 'accepted by the API'),
            q('floodgate:worker_rows_written:rate1m + floodgate:worker_duplicates_dropped:rate1m', 'stored or deduplicated by workers'),
          ],
          description:
            'In steady state the two lines overlap. Accepted above stored: the backlog grows (lag rising). Stored above accepted: workers are catching up after a spike.',
        },
      ],
    },
    {
      title: 'Stream and consumer group (Redis)',
      panels: [
        {
          title: 'Stream length',
          unit: 'short',
          min: 0,
          queries: [q('max(floodgate_redis_stream_length)', 'entries in the stream')],
          description:
            'Entries in the ingest stream (one per accepted request). Workers delete entries once written, so this is the backlog plus what is being flushed; it should hover near zero.',
        },
        {
          title: 'Consumer group lag and pending',
          unit: 'short',
          min: 0,
          queries: [
            q('max by (group) (floodgate_redis_group_lag)', 'lag {{group}} (not yet delivered)'),
            q('max by (group) (floodgate_redis_group_pending)', 'pending {{group}} (delivered, not acknowledged)'),
          ],
          thresholds: steps(10000),
          description:
            'lag: entries no worker has read yet; pending: read but not yet committed and acknowledged. Lag above the dashed line and rising for 10 minutes raises FloodgateConsumerLagGrowing.',
        },
        {
          title: 'Oldest pending entry age',
          unit: 's',
          min: 0,
          queries: [q('max by (group) (floodgate_redis_oldest_pending_age_seconds)', '{{group}}')],
          description:
            'How long the oldest delivered-but-unacknowledged entry has waited. Above CLAIM_IDLE_MS its consumer is presumed dead and another worker reclaims it; a steadily climbing line means a stuck worker.',
        },
        {
          title: 'Dead-letter stream length',
          unit: 'short',
          min: 0,
          queries: [q('max(floodgate_redis_dead_letter_length)', 'dead letters')],
          description: 'Entries waiting in the dead-letter stream. Should be 0; any entry is an accepted request whose events are not stored. See the FloodgateDeadLetterEntriesAppearing runbook.',
        },
        {
          title: 'Redis memory',
          unit: 'bytes',
          min: 0,
          queries: [q('max(floodgate_redis_used_memory_bytes)', 'used memory')],
          description: 'Memory used by Redis. The stream backlog lives here: it grows with lag. If it reaches maxmemory, XADD fails and the API answers 503 dependency_unavailable.',
        },
        {
          title: 'Redis clients and commands',
          unit: 'short',
          min: 0,
          queries: [q('max(floodgate_redis_connected_clients)', 'clients'), q('max(floodgate_redis_ops_per_second)', 'commands/s')],
          description: 'Connected clients (API processes, workers, tools) and commands per second as Redis reports them (instantaneous_ops_per_sec).',
        },
      ],
    },
    {
      title: 'Worker',
      panels: [
        {
          title: 'Flush duration p50 and p99',
          unit: 's',
          min: 0,
          queries: [
            q('outcome:floodgate_worker_flush_duration_seconds:p50_1m', 'p50'),
            q('outcome:floodgate_worker_flush_duration_seconds:p99_1m', 'p99'),
          ],
          description: 'Time to COPY, insert and commit one batch. Growing with the same batch size points at Postgres (locks, I/O, autovacuum); see the Postgres dashboard.',
        },
        {
          title: 'Batch size',
          unit: 'short',
          min: 0,
          queries: [
            q('floodgate:worker_batch_events:p50_1m', 'p50'),
            q('floodgate:worker_batch_events:p99_1m', 'p99'),
            q('floodgate:worker_batch_events:mean1m', 'mean'),
          ],
          description:
            'Events per flushed batch. Small batches at low traffic are normal (the FLUSH_INTERVAL_MS timer fires first); batches at FLUSH_BATCH_EVENTS mean the worker is saturated.',
        },
        {
          title: 'Rows written and duplicates dropped',
          unit: 'ops',
          min: 0,
          queries: [q('floodgate:worker_rows_written:rate1m', 'rows written'), q('floodgate:worker_duplicates_dropped:rate1m', 'duplicates dropped')],
          description:
            'Rows inserted per second, and events skipped because their idempotency key or id was already stored. Duplicates spike after a worker crash ' +
            '(reclaimed entries are rewritten) or when clients retry with keys: both expected.',
        },
        {
          title: 'Stream entries read and reclaimed',
          unit: 'ops',
          min: 0,
          queries: [q('floodgate:worker_entries_read:rate1m', 'read'), q('floodgate:worker_entries_reclaimed:rate1m', 'reclaimed (XAUTOCLAIM)')],
          description: 'Entries (one per accepted request) read from the consumer group. Reclaimed entries were held by a consumer that died or stalled for CLAIM_IDLE_MS.',
        },
        {
          title: 'Flush errors by kind',
          unit: 'ops',
          min: 0,
          queries: [q('kind:floodgate_worker_flush_errors:rate5m', '{{kind}}')],
          description:
            'Failed batch writes per second (5m). transient: connection or serialisation trouble, the whole batch is retried with backoff and nothing new is read. ' +
            'permanent: the batch is split and entries that fail alone are dead-lettered.',
        },
        {
          title: 'Events buffered in workers',
          unit: 'short',
          min: 0,
          queries: [q('sum(floodgate_worker_buffered_events)', 'buffered')],
          description: 'Events read from the stream and held in worker memory awaiting a flush. Stuck at a high value with flush errors: the worker is retrying one batch.',
        },
        {
          title: 'Dead-lettered entries by reason',
          width: 24,
          unit: 'ops',
          min: 0,
          queries: [q('reason:floodgate_worker_dead_lettered:rate5m', '{{reason}}')],
          description:
            'Entries moved to the dead-letter stream per second (5m). Any non-zero value means acknowledged events that will not be stored without action: ' +
            'see the FloodgateDeadLetterEntriesAppearing runbook.',
        },
      ],
    },
  ],
};

const postgres: DashboardSpec = {
  file: 'postgres.json',
  uid: 'floodgate-postgres',
  title: 'Floodgate / Postgres',
  description: "Postgres as the flush worker's pg_stat collector sees it: reachability, connections, partitions, I/O and the costliest statements.",
  rows: [
    {
      title: 'Health',
      panels: [
        {
          title: 'Postgres reachable',
          kind: 'stat',
          width: 6,
          height: 5,
          unit: 'none',
          queries: [q('min(floodgate_pg_up)', 'up')],
          valueTexts: [
            { value: 0, text: 'DOWN', color: RED },
            { value: 1, text: 'up', color: GREEN },
          ],
          description: "The worker's probe query succeeded on its last scrape. No value at all means no worker is scraped (FloodgatePostgresDown fires either way).",
        },
        {
          title: 'Connections used',
          kind: 'stat',
          width: 6,
          height: 5,
          unit: 'percentunit',
          queries: [q('sum(floodgate_pg_connections) / max(floodgate_pg_max_connections)', 'of max_connections')],
          thresholds: steps(0.8, 0.6),
          description: 'All connections (every state) as a share of max_connections. Red from 80 %: FloodgatePostgresConnectionsSaturated fires after 5 minutes.',
        },
        {
          title: "Tomorrow's partition",
          kind: 'stat',
          width: 6,
          height: 5,
          unit: 'none',
          queries: [q('min(floodgate_pg_partition_tomorrow_present)', 'tomorrow')],
          valueTexts: [
            { value: 0, text: 'MISSING', color: RED },
            { value: 1, text: 'present', color: GREEN },
          ],
          description: "Whether the events partition for tomorrow (UTC) exists. MISSING means the maintenance loop is failing; at midnight flushes would fail.",
        },
        {
          title: 'Oldest transaction',
          kind: 'stat',
          width: 6,
          height: 5,
          unit: 's',
          queries: [q('max(floodgate_pg_oldest_transaction_age_seconds)', 'oldest')],
          thresholds: steps(300, 60),
          description:
            'Age of the longest-open transaction. Minutes-long transactions hold back vacuum (dead tuples pile up) and may hold locks the worker waits on.',
        },
      ],
    },
    {
      title: 'Connections and cache',
      panels: [
        {
          title: 'Connections by state',
          unit: 'short',
          min: 0,
          stack: true,
          queries: [q('sum by (state) (floodgate_pg_connections)', '{{state}}')],
          description:
            'Backends by state from pg_stat_activity, stacked. Many "idle in transaction" means a client leaks transactions; compare the total with max_connections (next panel).',
        },
        {
          title: 'Connections vs max_connections',
          unit: 'short',
          min: 0,
          queries: [q('sum(floodgate_pg_connections)', 'in use'), q('max(floodgate_pg_max_connections)', 'max_connections')],
          description: 'Total connections against the server limit. Each API process and worker may open DB_POOL_SIZE connections.',
        },
        {
          title: 'Oldest transaction age',
          unit: 's',
          min: 0,
          queries: [q('max(floodgate_pg_oldest_transaction_age_seconds)', 'oldest open transaction')],
          thresholds: steps(300),
          description: 'A sawtooth under a few seconds is the worker committing batches. A line climbing for minutes is a stuck or forgotten transaction: find it in pg_stat_activity.',
        },
        {
          title: 'Cache hit ratio',
          unit: 'percentunit',
          max: 1,
          queries: [q('min(floodgate_pg_cache_hit_ratio)', 'buffer cache hits')],
          thresholds: [
            { value: null, color: RED },
            { value: 0.9, color: ORANGE },
            { value: 0.99, color: GREEN },
          ],
          description: 'Share of block reads served from shared buffers. An ingest workload is mostly writes, so a drop here usually means reads from someone else (ad-hoc queries, exports).',
        },
      ],
    },
    {
      title: 'Partitions',
      panels: [
        {
          title: 'Inserts per partition',
          unit: 'ops',
          min: 0,
          stack: true,
          queries: [q('partition:floodgate_pg_partition_inserts:rate1m', '{{partition}}')],
          description:
            "Rows inserted per second into each day's partition. Normally almost everything lands in today's; inserts into yesterday's are late events (timestamps in the past).",
        },
        {
          title: 'Dead tuples per partition',
          unit: 'short',
          min: 0,
          queries: [q('floodgate_pg_partition_dead_tuples', '{{partition}}')],
          description:
            'Dead row versions waiting for vacuum. Ingest is insert-only, so these come from rolled-back batches (failed flushes) and deletes; steady growth means vacuum is held back by an old transaction.',
        },
        {
          title: 'Database and partition sizes',
          width: 24,
          unit: 'bytes',
          min: 0,
          queries: [q('max(floodgate_pg_database_size_bytes)', 'database'), q('floodgate_pg_partition_size_bytes', '{{partition}}')],
          description: 'On-disk size of the database and of each events partition (with indexes). Each day should be about the same size at the same traffic; partitions past RETENTION_DAYS are dropped.',
        },
      ],
    },
    {
      title: 'Writes to disk',
      panels: [
        {
          title: 'Checkpoints',
          unit: 'ops',
          min: 0,
          queries: [q('kind:floodgate_pg_checkpoints:rate5m * 300', '{{kind}} per 5m')],
          description:
            'Checkpoints per 5 minutes by kind. Requested checkpoints (forced because max_wal_size filled) under heavy ingest mean max_wal_size is too small: each causes an I/O burst and slower flushes.',
        },
        {
          title: 'WAL written',
          unit: 'Bps',
          min: 0,
          queries: [q('floodgate:pg_wal_bytes:rate1m', 'WAL bytes/s')],
          description: 'Write-ahead log bytes per second, proportional to rows written (plus full-page images right after checkpoints).',
        },
      ],
    },
    {
      title: 'Statements (pg_stat_statements)',
      panels: [
        {
          title: 'Top statements by total time',
          unit: 'percentunit',
          min: 0,
          queries: [q('topk(10, query:floodgate_pg_statement_time_seconds:rate5m)', '{{query}}')],
          description:
            'Execution seconds per second of the costliest statements (1 = one backend busy all the time). The worker\'s COPY and INSERT … ON CONFLICT should dominate; anything else at the top is competing load.',
        },
        {
          title: 'Top statements by calls',
          unit: 'ops',
          min: 0,
          queries: [q('topk(10, query:floodgate_pg_statement_calls:rate5m)', '{{query}}')],
          description: 'Calls per second of the most frequent statements. A statement called per event rather than per batch shows up here first.',
        },
      ],
    },
  ],
};

const loadShedding: DashboardSpec = {
  file: 'load-shedding.json',
  uid: 'floodgate-load-shedding',
  title: 'Floodgate / Load shedding',
  description: 'The adaptive shedding controller: latency against its target, its level and per-class probabilities, what it shed and the circuit breakers.',
  rows: [
    {
      title: 'Controller',
      panels: [
        {
          title: 'Ingest p99 vs target',
          width: 16,
          unit: 's',
          min: 0,
          queries: [
            q('max(floodgate_shed_window_p99_seconds)', 'sliding-window p99 (what the controller reads)'),
            q(`route:floodgate_http_request_duration_seconds:p99_1m{${ROUTE}}`, 'p99 from the histogram (1m)'),
            q('max(floodgate_shed_target_p99_seconds)', 'target'),
          ],
          description:
            'The controller keeps the p99 of admitted requests near the target. The sliding-window p99 is what it acts on; the histogram p99 includes shed answers ' +
            'and is what the SLO sees. Both above the target with shedding at full level means the API is short of capacity, not of tuning.',
        },
        {
          title: 'Shedding mode',
          kind: 'stat',
          width: 8,
          unit: 'none',
          showName: true,
          queries: [q('max by (mode) (floodgate_shed_mode) == 1', '{{mode}}')],
          description: 'The active mode: off (controller idle), shadow (decisions counted but every request admitted) or enforce (requests really refused).',
        },
        {
          title: 'Shed level',
          unit: 'short',
          min: 0,
          max: 2,
          queries: [q('max(floodgate_shed_level)', 'level')],
          thresholds: [
            { value: null, color: GREEN },
            { value: 0.01, color: YELLOW },
            { value: 1, color: RED },
          ],
          description:
            'The controller state L in [0, 2]. 0: nothing shed. 0 to 1: low priority shed with probability L. 1 to 2: all low and normal with probability L - 1. ' +
            'Critical is only refused by the hard limits. One line for the whole API: its metrics endpoint averages the level of its processes.',
        },
        {
          title: 'Pressure',
          unit: 'short',
          min: 0,
          queries: [q('max(floodgate_shed_pressure)', 'pressure')],
          thresholds: steps(1.1, 1),
          description:
            'max(p99 / target p99, event-loop delay / its target): 1 means exactly at target. Above 1 the level climbs; below 1 minus the deadband it falls (more slowly).',
        },
        {
          title: 'Shed probability by class',
          width: 24,
          unit: 'percentunit',
          min: 0,
          max: 1,
          queries: [q('max by (priority) (floodgate_shed_probability)', '{{priority}}')],
          description: 'Probability that a new request of each class is refused now. low reaches 100 % before normal starts; critical stays at 0 outside hard limits.',
        },
      ],
    },
    {
      title: 'What was shed',
      panels: [
        {
          title: 'Shed requests by class',
          unit: 'reqps',
          min: 0,
          stack: true,
          queries: [q('priority:floodgate_shed_requests:rate1m', '{{priority}}')],
          description:
            'Requests refused with 503 overloaded per second, by priority, stacked (in shadow mode: requests that would have been refused, all admitted). ' +
            'Critical here means a hard limit or a breaker, not the controller.',
        },
        {
          title: 'Shed requests by reason',
          unit: 'reqps',
          min: 0,
          stack: true,
          queries: [q('sum by (reason) (priority_reason:floodgate_shed_requests:rate1m)', '{{reason}}')],
          description:
            'Why requests were refused: controller (latency above target), backlog (stream backlog past its watermarks), hard_limit (in-flight or event-loop delay ' +
            'past the safety limits), breaker (the class gate is open). Per-key rate limits (429) are counted apart, in floodgate_rate_limited_requests_total.',
        },
        {
          title: 'Share of ingest requests shed',
          unit: 'percentunit',
          min: 0,
          queries: [q('floodgate:shed_requests:ratio_rate1m', 'shed / all ingest requests')],
          description: 'Shed requests as a share of all POST /v1/events requests. Sustained for 15 minutes raises FloodgateSheddingActiveTooLong.',
        },
        {
          title: 'Accepted events by priority',
          unit: 'ops',
          min: 0,
          stack: true,
          queries: [q('priority:floodgate_events_accepted:rate1m', '{{priority}}')],
          description: 'What still gets through, by class. While shedding, critical should stay at its usual rate.',
        },
        {
          title: 'Rate-limited requests by class',
          unit: 'reqps',
          min: 0,
          stack: true,
          queries: [q('priority:floodgate_rate_limited_requests:rate1m', '{{priority}}')],
          description:
            'Requests refused with 429 rate_limited because their key\'s token bucket was empty, by class. This is a client over its own limit, ' +
            'not the service protecting itself: a rise here with no shedding means one tenant is sending faster than its key allows (keys list shows the limits).',
        },
      ],
    },
    {
      title: 'Circuit breakers',
      panels: [
        {
          title: 'Breaker states',
          kind: 'state-timeline',
          width: 16,
          unit: 'none',
          queries: [q('max by (breaker) (floodgate_breaker_state)', '{{breaker}}')],
          thresholds: [
            { value: null, color: GREEN },
            { value: 1, color: YELLOW },
            { value: 2, color: RED },
          ],
          valueTexts: [
            { value: 0, text: 'closed', color: GREEN },
            { value: 1, text: 'half-open', color: YELLOW },
            { value: 2, text: 'open', color: RED },
          ],
          description:
            'Per breaker (redis_write in the API, postgres_write in the worker, gate_normal and gate_low for the classes), worst state across processes: ' +
            'closed (calls flow), half-open (one trial let through), ' +
            'open (failing fast). Open for 2 minutes raises FloodgateCircuitBreakerOpen.',
        },
        {
          title: 'Breaker transitions per 5 minutes',
          width: 8,
          unit: 'short',
          min: 0,
          queries: [q('breaker_to:floodgate_breaker_transitions:rate5m * 300', '{{breaker}} to {{to}}')],
          description: 'State changes per breaker and target state. Repeated open/half-open cycles mean the dependency is flapping.',
        },
      ],
    },
    {
      title: 'Decision cost',
      panels: [
        {
          title: 'Shed decision latency',
          width: 24,
          unit: 's',
          min: 0,
          queries: [
            q('floodgate:shed_decision_duration_seconds:p50_1m', 'p50'),
            q('floodgate:shed_decision_duration_seconds:p99_1m', 'p99'),
          ],
          description: 'Time the shedding middleware takes to admit or refuse a request. It runs on every request, so it should stay in microseconds.',
        },
      ],
    },
  ],
};

/** Every dashboard this file generates, in a stable order. */
export function dashboards(): readonly DashboardSpec[] {
  return [ingestOverview, pipeline, postgres, loadShedding];
}

/** File name → JSON text (2-space indent, trailing newline) as committed under grafana/dashboards/. */
export function renderDashboards(): Map<string, string> {
  return new Map(dashboards().map((d) => [d.file, `${JSON.stringify(dashboardJson(d), null, 2)}\n`]));
}

/** Every panel query with its dashboard and panel title, so a live test can run each one against Prometheus. */
export function allDashboardQueries(): DashboardQuery[] {
  return dashboards().flatMap((d) =>
    d.rows.flatMap((row) => row.panels.flatMap((panel) => panel.queries.map((query) => ({ dashboard: d.title, panel: panel.title, ...query })))),
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
