import { Gauge, type Registry } from 'prom-client';
import { PRIORITIES } from '../lib/event-schema.js';
import { FastCounter, FastHistogram } from '../lib/fast-metrics.js';
import { LATENCY_BUCKETS } from '../lib/metrics.js';
import { createLatencyWindow, type LatencyWindow } from '../lib/latency-window.js';

/** Everything the API measures; one instance per process, registered in the registry it is given. */
export interface ApiMetrics {
  readonly requestDuration: FastHistogram<'route' | 'method' | 'status' | 'priority'>;
  readonly requestsInFlight: InFlight;
  readonly requestBytes: FastCounter<'route'>;
  readonly responseBytes: FastCounter<'route'>;
  readonly eventsAccepted: FastCounter<'priority'>;
  readonly eventsRejected: FastCounter<'reason'>;
  readonly errors: FastCounter<'route' | 'code'>;
  readonly batchSize: FastHistogram;
  readonly redisWriteDuration: FastHistogram<'outcome'>;
  /** QUEUE=postgres: the insert into event_queue, as seen by the API. */
  readonly pgQueueWriteDuration: FastHistogram<'outcome'>;
  readonly rateLimited: FastCounter<'priority'>;
  /** In-process sliding-window percentiles of admitted requests, read by the shedder and /v1/admin/load. */
  readonly latency: LatencyWindow;
}

/** A count of requests being served: a plain number on the hot path, read into its gauge when scraped. */
export interface InFlight {
  inc(): void;
  dec(): void;
}

/**
 * floodgate_http_requests_in_flight: the count is kept in a variable and set on the gauge at scrape time
 * (prom-client's `collect`), rather than going through the gauge's label hashing twice per request.
 */
function inFlightGauge(registers: Registry[]): InFlight {
  let count = 0;
  new Gauge({
    name: 'floodgate_http_requests_in_flight',
    help: 'HTTP requests being served.',
    registers,
    collect() {
      this.set(count);
    },
  });
  return {
    inc: () => void count++,
    dec: () => void count--,
  };
}

/** Stands in for every instrument when metrics are off: each call does nothing. */
const NOOP_INSTRUMENT = {
  inc() {},
  dec() {},
  set() {},
  observe() {},
};

/**
 * ApiMetrics whose instruments do nothing (METRICS_ENABLED=false), keeping the latency window the shedder
 * reads. Only the methods the API calls exist, so the cast is confined to this one place.
 */
export function createUninstrumentedApiMetrics(): ApiMetrics {
  const noop = NOOP_INSTRUMENT as unknown as FastCounter & FastHistogram & Gauge;
  return {
    requestDuration: noop,
    requestsInFlight: noop,
    requestBytes: noop,
    responseBytes: noop,
    eventsAccepted: noop,
    eventsRejected: noop,
    errors: noop,
    batchSize: noop,
    redisWriteDuration: noop,
    pgQueueWriteDuration: noop,
    rateLimited: noop,
    latency: createLatencyWindow(60),
  };
}

/** Creates the API's metrics in `registry`. */
export function createApiMetrics(registry: Registry): ApiMetrics {
  const registers = [registry];
  const rateLimited = new FastCounter({
    name: 'floodgate_rate_limited_requests_total',
    help: "Requests refused with 429 rate_limited (the key's token bucket was empty), by priority.",
    labelNames: ['priority'],
    registers,
  });
  for (const priority of PRIORITIES) rateLimited.inc({ priority }, 0);
  return {
    rateLimited,
    requestDuration: new FastHistogram({
      name: 'floodgate_http_request_duration_seconds',
      help: 'HTTP request duration by route, method, status and priority class (none where a route has no priority).',
      labelNames: ['route', 'method', 'status', 'priority'],
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    requestsInFlight: inFlightGauge(registers),
    requestBytes: new FastCounter({
      name: 'floodgate_http_request_bytes_total',
      help: 'Request body bytes received (as sent, before decompression).',
      labelNames: ['route'],
      registers,
    }),
    responseBytes: new FastCounter({
      name: 'floodgate_http_response_bytes_total',
      help: 'Response body bytes sent.',
      labelNames: ['route'],
      registers,
    }),
    eventsAccepted: new FastCounter({
      name: 'floodgate_events_accepted_total',
      help: 'Events accepted (202) by priority.',
      labelNames: ['priority'],
      registers,
    }),
    eventsRejected: new FastCounter({
      name: 'floodgate_events_rejected_total',
      help: 'Events of well-formed requests refused by validation, by reason.',
      labelNames: ['reason'],
      registers,
    }),
    errors: new FastCounter({
      name: 'floodgate_http_errors_total',
      help: 'Error answers by route and stable error code.',
      labelNames: ['route', 'code'],
      registers,
    }),
    batchSize: new FastHistogram({
      name: 'floodgate_request_events',
      help: 'Events per accepted request.',
      buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000],
      registers,
    }),
    redisWriteDuration: new FastHistogram({
      name: 'floodgate_redis_write_duration_seconds',
      help: 'XADD latency as seen by the API, by outcome (ok or error).',
      labelNames: ['outcome'],
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    pgQueueWriteDuration: new FastHistogram({
      name: 'floodgate_pg_queue_write_duration_seconds',
      help: 'QUEUE=postgres: latency of the insert into event_queue as seen by the API, by outcome (ok or error).',
      labelNames: ['outcome'],
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    latency: createLatencyWindow(60),
  };
}
