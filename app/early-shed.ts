import type { IncomingMessage, ServerResponse } from 'node:http';
import { ERROR_CATALOGUE, ERROR_CONTENT_TYPE, errorBody } from '../lib/errors.js';
import { withinCeiling } from '../lib/api-keys.js';
import type { KeyResolver } from './key-resolver.js';
import type { ApiMetrics } from './metrics.js';
import { presentedKey } from './middleware/auth.js';
import { recordAnswer } from './middleware/metrics.js';
import { REQUEST_ID_HEADER, requestIdFrom } from './middleware/request-id.js';
import { parsePriority, PRIORITY_HEADER } from './priority.js';
import { INGEST_ROUTE } from './routes/events.js';
import { overloadedAnswer, type Shedder } from './shedding/shedder.js';
import { admittedEarly } from './state.js';

/**
 * Sheds ingest requests that name their class in X-Priority before Koa sees them: no context, no routing, no
 * authentication, no error object. Under overload most requests are refused, so what a refusal costs decides
 * how much of the CPU is left for the admitted ones (measured: a refusal through the Koa stack cost about as
 * much as an admitted event). The answer is the same 503 `overloaded`, rendered from the error catalogue as the
 * Koa path renders it, with the same jittered Retry-After, measured under the same metrics.
 * Shedding is fair between tenants, so the tenant must be known: from the key cache, without a lookup. A key that
 * is not cached (or is bad), or a class above the key's ceiling, goes on to Koa, which authenticates and decides
 * as usual; such a request is never counted as its class's demand here.
 * Returns true when it answered; otherwise the request goes on to Koa, marked if it was admitted here.
 * The header is only a claim: admitting here grants nothing. Koa still authenticates the key and refuses a class
 * above its ceiling (403 priority_not_allowed) before the body is read, so a claimed `critical` cannot reach
 * the write path, nor its direct write to Postgres while Redis is down.
 */
export function createEarlyShed(shedder: Shedder, metrics: ApiMetrics, keys: KeyResolver, random: () => number = Math.random): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    if (req.method !== 'POST') return false;
    const url = req.url ?? '';
    if (url !== INGEST_ROUTE && !url.startsWith(`${INGEST_ROUTE}?`)) return false;
    const header = req.headers[PRIORITY_HEADER];
    if (typeof header !== 'string') return false;
    // A missing class (the key's default applies) or an invalid one (a 400) needs Koa and authentication.
    const priority = parsePriority(header);
    if (priority === undefined) return false;
    const started = performance.now();
    const presented = presentedKey(req);
    const grant = 'key' in presented ? keys.peek(presented.key) : undefined;
    if (!grant || !withinCeiling(priority, grant.maxPriority)) return false;
    const reason = shedder.decideEarly(priority, grant.tenant);
    if (reason === undefined) return false;
    if (reason === null) {
      admittedEarly.add(req);
      return false;
    }
    const requestId = requestIdFrom(req.headers[REQUEST_ID_HEADER.toLowerCase()]);
    // The same answer, rendered the same way, as a refusal through Koa's error middleware.
    const answer = overloadedAnswer(priority, random);
    const status = ERROR_CATALOGUE[answer.code].status;
    const body = errorBody(answer, requestId);
    const sentBytes = Buffer.byteLength(body);
    res.writeHead(status, {
      ...answer.headers,
      'Content-Type': ERROR_CONTENT_TYPE,
      'Content-Length': sentBytes,
      [REQUEST_ID_HEADER]: requestId,
    });
    res.end(body);
    // The same series a refusal through Koa feeds; it is not an admitted request, so not in the latency window.
    const seconds = (performance.now() - started) / 1000;
    recordAnswer(metrics, { route: INGEST_ROUTE, method: 'POST', status, priority, seconds, sentBytes, errorCode: answer.code });
    return true;
  };
}
