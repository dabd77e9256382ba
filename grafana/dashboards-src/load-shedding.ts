/** The "Floodgate / Load shedding" dashboard (grafana/dashboards/load-shedding.json). */
import { GREEN, INGEST_ROUTE, RED, YELLOW, q, steps, type DashboardSpec } from '../builder.js';

export const dashboard: DashboardSpec = {
  file: 'load-shedding.json',
  uid: 'floodgate-load-shedding',
  title: 'Floodgate / Load shedding',
  description:
    'The adaptive shedding controller: latency against its target, its level and per-class probabilities, what it shed and the circuit breakers.',
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
            q(`route:floodgate_http_request_duration_seconds:p99_1m{${INGEST_ROUTE}}`, 'p99 from the histogram (1m)'),
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
          description:
            'The active mode: off (controller idle), shadow (decisions counted but every request admitted) or enforce (requests really refused).',
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
          title: 'p99 per class vs its target',
          unit: 's',
          min: 0,
          queries: [
            q('max by (priority) (floodgate_shed_class_window_p99_seconds)', '{{priority}} p99'),
            q('max by (priority) (floodgate_shed_class_target_p99_seconds)', '{{priority}} target'),
          ],
          description:
            "Each class's sliding-window p99 against its own target (critical's is tighter than the rest): the controller's pressure is the worst class against its target. " +
            'Critical over its target sheds low, then normal, and lowers the limit on normal and low requests in flight.',
        },
        {
          title: 'Normal and low in flight: limit and queue',
          unit: 'short',
          min: 0,
          queries: [
            q('sum(floodgate_shed_noncritical_limit)', 'limit'),
            q('sum(floodgate_shed_noncritical_in_flight)', 'in flight'),
            q('sum by (priority) (floodgate_shed_queued_requests)', 'waiting {{priority}}'),
          ],
          description:
            'The adaptive limit on normal and low requests in flight (critical never waits for it): it shrinks while critical is over its target and grows back once it is within it. ' +
            'Requests past the limit wait, normal before low; one that waits SHED_QUEUE_TIMEOUT_MS is refused (reason queue).',
        },
        {
          title: 'Pressure',
          unit: 'short',
          min: 0,
          queries: [q('max(floodgate_shed_pressure)', 'pressure'), q('max(floodgate_shed_loop_utilization)', 'event loop busy (share)')],
          thresholds: steps(1.1, 1),
          description:
            'max(p99 / target p99, event-loop delay / its target): 1 means exactly at target. Above 1 the level climbs; below 1 minus the deadband it falls (more slowly). ' +
            'Latency counts only while the event loop was busy at least SHED_BUSY_LOOP_PERCENT of the window (the busy share drawn here): slow requests on an idle loop are not refused.',
        },
        {
          title: 'Shed probability by class',
          width: 24,
          unit: 'percentunit',
          min: 0,
          max: 1,
          queries: [q('max by (priority) (floodgate_shed_probability)', '{{priority}}')],
          description:
            'Probability that a new request of each class is refused now. low reaches 100 % before normal starts; critical stays at 0 outside hard limits.',
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
          description:
            'Shed requests as a share of all POST /v1/events requests. Sustained for 15 minutes raises FloodgateSheddingActiveTooLong.',
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
            "Requests refused with 429 rate_limited because their key's token bucket was empty, by class. This is a client over its own limit, " +
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
          description:
            'Time the shedding middleware takes to admit or refuse a request. It runs on every request, so it should stay in microseconds.',
        },
      ],
    },
  ],
};
