import type { IncomingMessage, ServerResponse } from 'node:http';
import { ERROR_CATALOGUE, ERROR_CONTENT_TYPE, errorBody, type ErrorAnswer } from '../lib/errors.js';
import { withinCeiling } from '../lib/api-keys.js';
import type { KeyResolver } from './key-resolver.js';
import type { ApiMetrics } from './metrics.js';
import { authenticateFromCache } from './middleware/auth.js';
import { recordAnswer } from './middleware/metrics.js';
import { REQUEST_ID_HEADER, requestIdFrom } from './middleware/request-id.js';
import { PRIORITIES, type Priority } from '../lib/event-schema.js';
import { parsePriority, PRIORITY_HEADER } from './priority.js';
import { jitteredRetryAfter } from './retry-after.js';
import { INGEST_ROUTE } from './routes/events.js';
import { overloadedAnswer, type Shedder } from './shedding/shedder.js';
import { admittedEarly, authenticatedEarly } from './state.js';

const REQUEST_ID_HEADER_LOWER = REQUEST_ID_HEADER.toLowerCase();
const OVERLOADED_STATUS = ERROR_CATALOGUE.overloaded.status;

/** An error body rendered up to its request id: `head + requestId + tail`, `bytes` long without the id. */
interface Prerendered {
  readonly head: string;
  readonly tail: string;
  readonly bytes: number;
  /** Whether Retry-After is the answer's only header (the one `refuse` writes); otherwise it is not used. */
  readonly retryAfterOnly: boolean;
}

/**
 * Renders `error` with errorBody once. A request id is ASCII that JSON writes as it is (see requestIdFrom), so
 * putting it between the two halves gives errorBody's own output, and its length is its size in bytes.
 */
function prerender(error: ErrorAnswer): Prerendered {
  const marker = 'request-id';
  const body = errorBody(error, marker);
  const at = body.lastIndexOf(`"${marker}"`) + 1;
  const head = body.slice(0, at);
  const tail = body.slice(at + marker.length);
  const headers = Object.keys(error.headers ?? {});
  const retryAfterOnly = headers.length === 1 && headers[0] === 'Retry-After';
  return { head, tail, bytes: Buffer.byteLength(head) + Buffer.byteLength(tail), retryAfterOnly };
}

/**
 * Answers ingest requests before Koa sees them when the answer needs no Koa: no context, no routing, no error
 * object. Under overload most requests are refused, so what a refusal costs decides how much of the CPU is left
 * for the admitted ones (measured: a refusal through the Koa stack cost about as much as an admitted event).
 * Two kinds of refusal are taken here, rendered from the error catalogue exactly as the Koa path renders them
 * and measured under the same metrics:
 * - what authentication answers from its cache (no key, a key known to be invalid, an address past its budget
 *   of failed authentications): an unauthenticated flood costs a header check per request;
 * - the shedder's 503 `overloaded` for a request that names its class in X-Priority and presents a cached key:
 *   shedding is fair between tenants, so the tenant must be known. A class above the key's ceiling, or a key
 *   without the ingest scope, goes on to Koa (403) and is not counted as its class's demand here.
 * Returns true when it answered; otherwise the request goes on to Koa, marked if it was admitted here.
 * The header is only a claim: admitting here grants nothing. Koa still authenticates the key and refuses a class
 * above its ceiling (403 priority_not_allowed) before the body is read, so a claimed `critical` cannot reach
 * the write path, nor its direct write to Postgres while Redis is down.
 */
export function createEarlyShed(
  shedder: Shedder,
  metrics: ApiMetrics,
  keys: KeyResolver,
  random: () => number = Math.random,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  // The 503 of each class, rendered once: under overload it is most of the answers, and only its request id and
  // its jittered Retry-After differ from one to the next.
  const overloaded = new Map<Priority, Prerendered>(PRIORITIES.map((p) => [p, prerender(overloadedAnswer(p, () => 0))]));

  /** Writes a 503 overloaded from its pre-rendered parts, as `answer` would write it. */
  function refuse(req: IncomingMessage, res: ServerResponse, priority: Priority, started: number): true {
    const { head, tail, bytes, retryAfterOnly } = overloaded.get(priority)!;
    if (!retryAfterOnly) return answer(req, res, overloadedAnswer(priority, random), priority, started);
    const requestId = requestIdFrom(req.headers[REQUEST_ID_HEADER_LOWER]);
    const sentBytes = bytes + requestId.length;
    res.writeHead(OVERLOADED_STATUS, [
      'Retry-After',
      jitteredRetryAfter(random),
      'Content-Type',
      ERROR_CONTENT_TYPE,
      'Content-Length',
      String(sentBytes),
      REQUEST_ID_HEADER,
      requestId,
    ]);
    res.end(head + requestId + tail);
    const seconds = (performance.now() - started) / 1000;
    recordAnswer(metrics, {
      route: INGEST_ROUTE,
      method: 'POST',
      status: OVERLOADED_STATUS,
      priority,
      seconds,
      sentBytes,
      errorCode: 'overloaded',
    });
    return true;
  }

  /** Writes an error answer exactly as Koa's error middleware would, and records it under the same metrics. */
  function answer(req: IncomingMessage, res: ServerResponse, error: ErrorAnswer, priority: string, started: number): true {
    const requestId = requestIdFrom(req.headers[REQUEST_ID_HEADER_LOWER]);
    const status = ERROR_CATALOGUE[error.code].status;
    const body = errorBody(error, requestId);
    const sentBytes = Buffer.byteLength(body);
    res.writeHead(status, {
      ...error.headers,
      'Content-Type': ERROR_CONTENT_TYPE,
      'Content-Length': sentBytes,
      [REQUEST_ID_HEADER]: requestId,
    });
    res.end(body);
    // The same series a refusal through Koa feeds; it is not an admitted request, so not in the latency window.
    const seconds = (performance.now() - started) / 1000;
    recordAnswer(metrics, { route: INGEST_ROUTE, method: 'POST', status, priority, seconds, sentBytes, errorCode: error.code });
    return true;
  }

  return (req, res) => {
    if (req.method !== 'POST') return false;
    const url = req.url ?? '';
    if (url !== INGEST_ROUTE && !url.startsWith(`${INGEST_ROUTE}?`)) return false;
    const started = performance.now();
    // What authentication would answer from the cache: a refusal costs no Koa (an unauthenticated flood is
    // mostly refusals once its address has spent its failure budget); a key to look up needs Koa.
    const cached = authenticateFromCache(req, keys);
    if ('refusal' in cached) return answer(req, res, cached.refusal, 'none', started);
    if (!('grant' in cached)) return false;
    const { grant } = cached;
    authenticatedEarly.set(req, grant);
    const header = req.headers[PRIORITY_HEADER];
    if (typeof header !== 'string') return false;
    // A missing class (the key's default applies) or an invalid one (a 400) needs Koa; so does a class above the
    // key's ceiling (403) or a key without the ingest scope (403): such a request is not counted as demand here.
    const priority = parsePriority(header);
    if (priority === undefined || !withinCeiling(priority, grant.maxPriority) || !grant.scopes.includes('ingest')) return false;
    const reason = shedder.decideEarly(priority, grant.tenant);
    if (reason === undefined) return false;
    if (reason === null) {
      admittedEarly.add(req);
      return false;
    }
    // The same answer, rendered the same way, as a refusal through Koa's error middleware; held for as long as
    // the shedder says (a client that comes straight back then waits first).
    const delay = shedder.refusalDelayMs(priority);
    if (delay === 0) return refuse(req, res, priority, started);
    setTimeout(() => refuse(req, res, priority, started), delay);
    return true;
  };
}
