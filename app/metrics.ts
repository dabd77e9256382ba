import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { PRIORITIES } from '../lib/event-schema.js';
import { LATENCY_BUCKETS } from '../lib/metrics.js';
import { createLatencyWindow, type LatencyWindow } from '../lib/latency-window.js';

/** Everything the API measures; one instance per process, registered in the registry it is given. */
export interface ApiMetrics {
  readonly requestDuration: Histogram<'route' | 'method' | 'status'>;
  readonly requestsInFlight: Gauge;
  readonly requestBytes: Counter<'route'>;
  readonly responseBytes: Counter<'route'>;
  readonly eventsAccepted: Counter<'priority'>;
  readonly eventsRejected: Counter<'reason'>;
  readonly errors: Counter<'route' | 'code'>;
  readonly batchSize: Histogram;
  readonly redisWriteDuration: Histogram<'outcome'>;
  readonly rateLimited: Counter<'priority'>;
  /** In-process sliding-window percentiles of admitted requests, read by the shedder and /v1/admin/load. */
  readonly latency: LatencyWindow;
}

/** Creates the API's metrics in `registry`. */
export function createApiMetrics(registry: Registry): ApiMetrics {
  const registers = [registry];
  const rateLimited = new Counter({
    name: 'floodgate_rate_limited_requests_total',
    help: 'Requests refused with 429 rate_limited (the key\'s token bucket was empty), by priority.',
    labelNames: ['priority'],
    registers,
  });
  for (const priority of PRIORITIES) rateLimited.inc({ priority }, 0);
  return {
    rateLimited,
    requestDuration: new Histogram({
      name: 'floodgate_http_request_duration_seconds',
      help: 'HTTP request duration by route, method and status.',
      labelNames: ['route', 'method', 'status'],
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    requestsInFlight: new Gauge({ name: 'floodgate_http_requests_in_flight', help: 'HTTP requests being served.', registers }),
    requestBytes: new Counter({ name: 'floodgate_http_request_bytes_total', help: 'Request body bytes received (as sent, before decompression).', labelNames: ['route'], registers }),
    responseBytes: new Counter({ name: 'floodgate_http_response_bytes_total', help: 'Response body bytes sent.', labelNames: ['route'], registers }),
    eventsAccepted: new Counter({ name: 'floodgate_events_accepted_total', help: 'Events accepted (202) by priority.', labelNames: ['priority'], registers }),
    eventsRejected: new Counter({
      name: 'floodgate_events_rejected_total',
      help: 'Events of well-formed requests refused by validation, by reason.',
      labelNames: ['reason'],
      registers,
    }),
    errors: new Counter({
      name: 'floodgate_http_errors_total',
      help: 'Error answers by route and stable error code.',
      labelNames: ['route', 'code'],
      registers,
    }),
    batchSize: new Histogram({
      name: 'floodgate_request_events',
      help: 'Events per accepted request.',
      buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000],
      registers,
    }),
    redisWriteDuration: new Histogram({
      name: 'floodgate_redis_write_duration_seconds',
      help: 'XADD latency as seen by the API, by outcome (ok or error).',
      labelNames: ['outcome'],
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    latency: createLatencyWindow(60),
  };
}
