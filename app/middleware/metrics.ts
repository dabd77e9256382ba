import type { Middleware } from 'koa';
import type { LatencyWindow } from '../../lib/latency-window.js';
import type { ApiMetrics } from '../metrics.js';

/**
 * Times every request (histogram by route/method/status, in-flight gauge, bytes) and feeds the sliding
 * window. Runs outermost so that error answers are measured too.
 */
export function measureRequests(metrics: ApiMetrics): Middleware {
  // Label children cached by (route, method, status, priority): resolving labels on every request costs a hash each time.
  const children = new Map<string, ReturnType<ApiMetrics['requestDuration']['child']>>();
  const durationFor = (route: string, method: string, status: number, priority: string) => {
    const key = `${route} ${method} ${status} ${priority}`;
    let child = children.get(key);
    if (!child) {
      child = metrics.requestDuration.child({ route, method, status: String(status), priority });
      // Routes and methods are bounded by the router; statuses by HTTP. The cap guards against surprises.
      if (children.size < 1000) children.set(key, child);
    }
    return child;
  };
  return async (ctx, next) => {
    const started = performance.now();
    metrics.requestsInFlight.inc();
    try {
      await next();
    } finally {
      const seconds = (performance.now() - started) / 1000;
      metrics.requestsInFlight.dec();
      const route = (ctx as { _matchedRoute?: string })._matchedRoute ?? 'unmatched';
      // Set by resolvePriority on ingest (shed requests included); other routes have no class.
      const priority = (ctx.state.priority as string | undefined) ?? 'none';
      durationFor(route, ctx.method, ctx.status, priority).observe(seconds);
      metrics.latency.record(seconds * 1000);
      const received = Number(ctx.get('content-length'));
      if (received > 0) metrics.requestBytes.inc({ route }, received);
      // Bodies are strings or buffers by now (routes serialise their own JSON), so this does not re-serialise.
      const sent = typeof ctx.body === 'string' || Buffer.isBuffer(ctx.body) ? ctx.response.length : undefined;
      if (sent) metrics.responseBytes.inc({ route }, sent);
      const code = ctx.state.errorCode as string | undefined;
      if (code) metrics.errors.inc({ route, code });
    }
  };
}

/** With metrics off: only feeds the sliding window that the shedder and /v1/admin/load read. */
export function recordLatency(latency: LatencyWindow): Middleware {
  return async (_ctx, next) => {
    const started = performance.now();
    try {
      await next();
    } finally {
      latency.record(performance.now() - started);
    }
  };
}
