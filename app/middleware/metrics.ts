import type { Middleware } from 'koa';
import type { ApiMetrics } from '../metrics.js';
import type { State } from '../state.js';

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
 * Times every request (histogram by route/method/status, in-flight gauge, bytes). Runs outermost so that error
 * answers are measured too. The shedder's latency window is not fed here: it holds the server's own work, from
 * the body read to the answer (see the shedder), not the time a client takes to send its request.
 */
export function measureRequests(metrics: ApiMetrics): Middleware<State> {
  return async (ctx, next) => {
    const started = performance.now();
    metrics.requestsInFlight.inc();
    try {
      await next();
    } finally {
      const seconds = (performance.now() - started) / 1000;
      metrics.requestsInFlight.dec();
      const route = (ctx as { _matchedRoute?: string })._matchedRoute ?? 'unmatched';
      const received = Number(ctx.get('content-length'));
      if (received > 0) metrics.requestBytes.inc({ route }, received);
      recordAnswer(metrics, {
        route,
        method: ctx.method,
        status: ctx.status,
        // Set by resolvePriority on ingest (shed requests included); other routes have no class.
        priority: ctx.state.priority ?? 'none',
        seconds,
        // Bodies are strings or buffers by now (routes serialise their own JSON), so this does not re-serialise.
        sentBytes: typeof ctx.body === 'string' || Buffer.isBuffer(ctx.body) ? ctx.response.length : 0,
        errorCode: ctx.state.errorCode,
      });
    }
  };
}
