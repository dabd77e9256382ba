/** The "Floodgate / Ingest overview" dashboard (grafana/dashboards/ingest-overview.json). */
import { GREEN, INGEST_ROUTE, ORANGE, RED, q, steps, type DashboardSpec } from '../builder.js';

export const dashboard: DashboardSpec = {
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
          description:
            'Events answered 202 per second, all priorities. A sudden drop with steady requests means clients are being refused.',
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
          queries: [q(`route_status:floodgate_http_requests:rate1m{${INGEST_ROUTE}}`, '{{status}}')],
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
          description:
            'Events accepted (202) per second by priority class, stacked. Under load shedding low goes first, then normal; critical should stay flat.',
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
          description:
            'Events refused by validation inside otherwise well-formed requests. A rise usually means one client shipped a bad build; check the logs by tenant.',
        },
        {
          title: 'Events per request',
          unit: 'short',
          min: 0,
          queries: [q('floodgate:request_events:mean1m', 'mean events per accepted request')],
          description:
            'Mean batch size of accepted requests. A drop to 1 with the same event rate multiplies request overhead: expect higher CPU and latency.',
        },
        {
          title: 'Request and response bytes',
          unit: 'Bps',
          min: 0,
          queries: [
            q('route:floodgate_http_request_bytes:rate1m', 'in {{route}}'),
            q('route:floodgate_http_response_bytes:rate1m', 'out {{route}}'),
          ],
          description:
            'Body bytes per second as sent on the wire (compressed bodies count compressed). Large jumps with flat request rates mean bigger batches or payloads.',
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
            'Error answers per second by stable error code (docs/api.md error table). internal_error and dependency_unavailable spend the availability budget; ' +
            'overloaded is deliberate shedding; 4xx codes are client mistakes.',
        },
        {
          title: 'Budget-spending error ratio: POST /v1/events',
          unit: 'percentunit',
          min: 0,
          queries: [q('floodgate:slo_availability_errors:ratio_rate5m', '5m'), q('floodgate:slo_availability_errors:ratio_rate1h', '1h')],
          thresholds: [
            { value: null, color: GREEN },
            { value: 0.006, color: ORANGE },
            { value: 0.0144, color: RED },
          ],
          description:
            'Share of ingest requests failing with internal_error or dependency_unavailable. Dashed lines: the slow (0.6 %) and fast (1.44 %) burn thresholds.',
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
          description:
            "Concurrent requests (Little's law: rate x latency). Grows before latency does when something downstream slows down.",
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
            "How late timers fire: the time a ready callback waits for the event loop. Every request waits that long; above 100 ms (dashed, the shedder's backstop target) the shedder acts on it. " +
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
          description:
            'Resident memory and V8 heap per role (API summed across processes). Steady growth of heap used across GCs is a leak; RSS far above heap is buffers (large bodies, COPY).',
        },
        {
          title: 'Time in garbage collection',
          unit: 'percentunit',
          min: 0,
          stack: true,
          queries: [q('role_kind:nodejs_gc_duration_seconds:rate1m', '{{role}} {{kind}}')],
          description:
            'Share of wall time spent in GC pauses, by GC kind. More than a few percent adds directly to latency; major GCs point at heap pressure.',
        },
      ],
    },
  ],
};
