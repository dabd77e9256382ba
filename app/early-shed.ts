import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isPriority } from '../lib/event-schema.js';
import type { ApiMetrics } from './metrics.js';
import { presentedKey, type KeyResolver } from './middleware/auth.js';
import { recordAnswer } from './middleware/metrics.js';
import { SAFE_REQUEST_ID } from './middleware/request-id.js';
import { DECIDED_EARLY, overloadedAnswer, type Shedder } from './shedding/shedder.js';

const INGEST_ROUTE = '/v1/events';

/**
 * Sheds ingest requests that name their class in X-Priority before Koa sees them: no context, no routing, no
 * authentication, no error object, a pre-serialised body. Under overload most requests are refused, so what a
 * refusal costs decides how much of the CPU is left for the admitted ones (measured: a refusal through the
 * Koa stack cost about as much as an admitted event). The answer is the same 503 `overloaded` with a jittered
 * Retry-After, measured under the same metrics; an unauthenticated request may get it instead of a 401.
 * Shedding is fair between tenants, so the tenant must be known: from the key cache, without a lookup; a key
 * that is not cached (or is bad) goes on to Koa and authentication, which decide as usual.
 * Returns true when it answered; otherwise the request goes on to Koa, marked if it was admitted here.
 */
export function createEarlyShed(shedder: Shedder, metrics: ApiMetrics, keys: KeyResolver, random: () => number = Math.random): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    if (req.method !== 'POST') return false;
    const url = req.url ?? '';
    if (url !== INGEST_ROUTE && !url.startsWith(`${INGEST_ROUTE}?`)) return false;
    const header = req.headers['x-priority'];
    if (typeof header !== 'string') return false;
    const priority = header.trim().toLowerCase();
    if (!isPriority(priority)) return false;
    const started = performance.now();
    const apiKeyHeader = req.headers['x-api-key'];
    const key = presentedKey(req.headers.authorization ?? '', typeof apiKeyHeader === 'string' ? apiKeyHeader : '');
    const grant = key === null ? undefined : keys.cached(key);
    if (!grant) return false;
    const reason = shedder.decideEarly(priority, grant.tenant);
    if (reason === undefined) return false;
    if (reason === null) {
      (req as { [DECIDED_EARLY]?: boolean })[DECIDED_EARLY] = true;
      return false;
    }
    const given = req.headers['x-request-id'];
    const requestId = typeof given === 'string' && SAFE_REQUEST_ID.test(given) ? given : randomUUID();
    const answer = overloadedAnswer(priority, random);
    // The request id is [A-Za-z0-9._:-] and the message fixed text: nothing here needs JSON escaping.
    const body = `{"error":"overloaded","message":"${answer.message}","request_id":"${requestId}"}`;
    const sentBytes = Buffer.byteLength(body);
    res.writeHead(503, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': sentBytes,
      'Retry-After': answer.retryAfter,
      'X-Request-Id': requestId,
    });
    res.end(body);
    // The same series a refusal through Koa feeds; it is not an admitted request, so not in the latency window.
    const seconds = (performance.now() - started) / 1000;
    recordAnswer(metrics, { route: INGEST_ROUTE, method: 'POST', status: 503, priority, seconds, sentBytes, errorCode: 'overloaded' });
    return true;
  };
}
