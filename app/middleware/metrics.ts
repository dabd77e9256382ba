import type { Middleware } from 'koa';
import type { LatencyWindow } from '../../lib/latency-window.js';
import type { ApiMetrics } from '../metrics.js';

const OUTSIDE_WINDOW = Symbol('outsideLatencyWindow');

/**
 * Keeps a route's latency out of the sliding window the shedder holds to its p99 target (it is still measured
 * in the request histogram). For the query API: a stats read over days takes longer than an ingest request by
 * nature, and must not make the shedder refuse ingest traffic.
 */
export function outsideLatencyWindow(): Middleware {
  return (ctx, next) => {
    (ctx.state as { [OUTSIDE_WINDOW]?: boolean })[OUTSIDE_WINDOW] = true;
    return next();
  };
}

const inWindow = (state: unknown) => (state as { [OUTSIDE_WINDOW]?: boolean })[OUTSIDE_WINDOW] !== true;

/** One answered request, as the request metrics count it. */
export interface Answer {
  readonly route: string;
  readonly method: string;
  readonly status: number;
  /** The request's class on ingest, `none` elsewhere. */
  readonly priority: string;
  readonly seconds: number;
  readonly sentBytes: number;
  readonly errorCode: string | undefined;
}

/** Counts one answer: duration by route/method/status/priority, bytes sent, the error code if any. */
export function recordAnswer(metrics: ApiMetrics, answer: Answer): void {
  const { route, method, status, priority } = answer;
  metrics.requestDuration.observe({ route, method, status: String(status), priority }, answer.seconds);
  if (answer.sentBytes > 0) metrics.responseBytes.inc({ route }, answer.sentBytes);
  if (answer.errorCode) metrics.errors.inc({ route, code: answer.errorCode });
}

/**
 * Times every request (histogram by route/method/status, in-flight gauge, bytes) and feeds the sliding
 * window. Runs outermost so that error answers are measured too.
 */
export function measureRequests(metrics: ApiMetrics): Middleware {
  return async (ctx, next) => {
    const started = performance.now();
    metrics.requestsInFlight.inc();
    try {
      await next();
    } finally {
      const seconds = (performance.now() - started) / 1000;
      metrics.requestsInFlight.dec();
      const route = (ctx as { _matchedRoute?: string })._matchedRoute ?? 'unmatched';
      if (inWindow(ctx.state)) metrics.latency.record(seconds * 1000);
      const received = Number(ctx.get('content-length'));
      if (received > 0) metrics.requestBytes.inc({ route }, received);
      recordAnswer(metrics, {
        route,
        method: ctx.method,
        status: ctx.status,
        // Set by resolvePriority on ingest (shed requests included); other routes have no class.
        priority: (ctx.state.priority as string | undefined) ?? 'none',
        seconds,
        // Bodies are strings or buffers by now (routes serialise their own JSON), so this does not re-serialise.
        sentBytes: typeof ctx.body === 'string' || Buffer.isBuffer(ctx.body) ? ctx.response.length : 0,
        errorCode: ctx.state.errorCode as string | undefined,
      });
    }
  };
}

/** With metrics off: only feeds the sliding window that the shedder and /v1/admin/load read. */
export function recordLatency(latency: LatencyWindow): Middleware {
  return async (ctx, next) => {
    const started = performance.now();
    try {
      await next();
    } finally {
      if (inWindow(ctx.state)) latency.record(performance.now() - started);
    }
  };
}
