import type { Middleware } from 'koa';
import type { KeyGrant } from '../../lib/api-keys.js';
import type { Config } from '../../lib/config.js';
import { apiError } from '../../lib/errors.js';
import { checkEvent, isPriority, type FieldError, type Priority, type ValidEvent } from '../../lib/event-schema.js';
import type { Redis } from '../../lib/redis.js';
import { ENTRY_FIELD, encodeEntry } from '../../lib/stream-entry.js';
import { checkBodyHeaders, parseJson, readBody } from '../body.js';
import type { ApiMetrics } from '../metrics.js';

/** Per-event rejection in a 202 or 422 answer. */
export interface Rejection {
  index: number;
  errors: FieldError[];
}

/** The 202 answer: ids in the order of the accepted events. */
export interface IngestResult {
  accepted: number;
  ids: string[];
  rejected: Rejection[];
}

/** Seconds a client should wait before retrying a 503, jittered so that retries do not arrive in lockstep. */
export function retryAfterSeconds(base = 1, spread = 2): string {
  return String(base + Math.floor(Math.random() * (spread + 1)));
}

/** Sets `ctx.state.priority` from `X-Priority`, else the key's default; runs before shedding needs it. */
export function resolvePriority(): Middleware {
  return async (ctx, next) => {
    const header = ctx.get('x-priority');
    const grant = ctx.state.grant as KeyGrant;
    if (!header) ctx.state.priority = grant.defaultPriority;
    else {
      const value = header.trim().toLowerCase();
      if (!isPriority(value)) throw apiError('invalid_header', `X-Priority must be critical, normal or low, got "${header.slice(0, 50)}"`);
      ctx.state.priority = value;
    }
    await next();
  };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Splits a parsed body into the raw events it carries, enforcing the batch rules. */
function rawEvents(body: unknown, maxBatchEvents: number): { events: unknown[]; batch: boolean } {
  if (!isPlainObject(body)) throw apiError('invalid_body', 'the body must be an event object or {"events": [...]}');
  if (!Object.hasOwn(body, 'events')) return { events: [body], batch: false };
  const { events } = body;
  if (Object.keys(body).length !== 1 || !Array.isArray(events)) {
    throw apiError('invalid_body', 'a batch must be exactly {"events": [...]}');
  }
  if (events.length === 0) throw apiError('empty_batch', 'the batch holds no events');
  if (events.length > maxBatchEvents) {
    throw apiError('batch_too_large', `a batch holds at most ${maxBatchEvents} events, got ${events.length}`);
  }
  return { events, batch: true };
}

/** POST /v1/events: validate at the edge, put one stream entry per request, answer 202 once Redis has it. */
export function ingestEvents(config: Config, redis: Redis, metrics: ApiMetrics): Middleware {
  const limits = { retentionDays: config.retentionDays, maxEventDataBytes: config.maxEventDataBytes };
  return async (ctx) => {
    const grant = ctx.state.grant as KeyGrant;
    const priority = ctx.state.priority as Priority;
    const headerKey = ctx.get('idempotency-key');
    if (headerKey.length > 255) throw apiError('invalid_header', 'Idempotency-Key must be at most 255 characters');

    const encoding = checkBodyHeaders(ctx.req, config);
    const { events, batch } = rawEvents(parseJson(await readBody(ctx.req, encoding, config)), config.maxBatchEvents);

    const receivedAt = Date.now();
    const valid: ValidEvent[] = [];
    const rejected: Rejection[] = [];
    for (let i = 0; i < events.length; i++) {
      const check = checkEvent(events[i], receivedAt, limits, batch ? undefined : headerKey || undefined);
      if (check.ok) valid.push(check.event);
      else rejected.push({ index: i, errors: check.errors });
    }
    if (rejected.length > 0) metrics.eventsRejected.inc({ reason: 'invalid_event' }, rejected.length);
    if (valid.length === 0) {
      throw apiError('invalid_event', batch ? 'every event of the batch is invalid' : 'the event is invalid', { rejected });
    }

    const writeStarted = performance.now();
    try {
      await redis.xadd(config.streamKey, '*', ENTRY_FIELD, encodeEntry(grant.tenant, priority, receivedAt, valid));
      metrics.redisWriteDuration.observe({ outcome: 'ok' }, (performance.now() - writeStarted) / 1000);
    } catch {
      metrics.redisWriteDuration.observe({ outcome: 'error' }, (performance.now() - writeStarted) / 1000);
      throw apiError('dependency_unavailable', 'the queue cannot take the events right now; nothing was accepted', undefined, {
        'Retry-After': retryAfterSeconds(),
      });
    }
    metrics.eventsAccepted.inc({ priority }, valid.length);
    metrics.batchSize.observe(valid.length);
    ctx.status = 202;
    ctx.type = 'application/json';
    ctx.body = JSON.stringify({ accepted: valid.length, ids: valid.map((e) => e.id), rejected } satisfies IngestResult);
  };
}
