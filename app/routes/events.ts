import type { Middleware } from 'koa';
import type { KeyGrant } from '../../lib/api-keys.js';
import { BREAKER_CODE, isBreakerRejection, type Breaker } from '../../lib/breaker.js';
import type { Config } from '../../lib/config.js';
import type { Pool } from '../../lib/db.js';
import { apiError, type ApiError } from '../../lib/errors.js';
import { writeEntries } from '../../lib/pg-batch-write.js';
import { checkEvent, clockCorrectionMs, isPriority, parseSentAt, type FieldError, type Priority, type ValidEvent } from '../../lib/event-schema.js';
import type { Logger } from '../../lib/logger.js';
import type { Redis } from '../../lib/redis.js';
import { ENTRY_FIELD, decodeEntry, encodeEntry } from '../../lib/stream-entry.js';
import { checkBodyHeaders, parseJson, readBody } from '../body.js';
import type { ApiMetrics } from '../metrics.js';

/** Per-event rejection in a 202 or 422 answer. */
export interface Rejection {
  index: number;
  errors: FieldError[];
}

/** The 202 (queued) or 201 (stored) answer: ids in the order of the accepted events. */
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

/** Splits a parsed body into the raw events it carries and the batch's `sent_at` (ms), enforcing the batch rules. */
function rawEvents(body: unknown, maxBatchEvents: number): { events: unknown[]; batch: boolean; sentAt: number | null } {
  if (!isPlainObject(body)) throw apiError('invalid_body', 'the body must be an event object or {"events": [...]}');
  if (!Object.hasOwn(body, 'events')) return { events: [body], batch: false, sentAt: null };
  const { events } = body;
  const hasSentAt = Object.hasOwn(body, 'sent_at');
  if (Object.keys(body).length !== (hasSentAt ? 2 : 1) || !Array.isArray(events)) {
    throw apiError('invalid_body', 'a batch must be exactly {"events": [...]} with an optional "sent_at"');
  }
  const sentAt = hasSentAt ? parseSentAt(body.sent_at) : null;
  if (hasSentAt && sentAt === null) throw apiError('invalid_body', 'sent_at must be an RFC 3339 time');
  if (events.length === 0) throw apiError('empty_batch', 'the batch holds no events');
  if (events.length > maxBatchEvents) {
    throw apiError('batch_too_large', `a batch holds at most ${maxBatchEvents} events, got ${events.length}`);
  }
  return { events, batch: true, sentAt };
}

/** What the ingest route writes to. */
export interface IngestDeps {
  readonly config: Config;
  readonly redis: Redis;
  /** For critical events while Redis cannot take them. */
  readonly pool: Pool;
  readonly metrics: ApiMetrics;
  /** Guards the XADD: open, it answers non-critical requests 503 before their body is read. */
  readonly redisBreaker: Breaker;
  readonly logger: Logger;
}

function queueUnavailable(): ApiError {
  return apiError('dependency_unavailable', 'the queue cannot take the events right now; nothing was accepted', undefined, {
    'Retry-After': retryAfterSeconds(),
  });
}

/**
 * POST /v1/events: validate at the edge, put one stream entry per request, answer 202 once Redis has it.
 * When the XADD fails, times out or its breaker is open, critical events are written straight to Postgres
 * through the worker's own exactly-once path (same ids, same idempotency-key claim) and answered 201;
 * everything else gets 503 dependency_unavailable.
 */
export function ingestEvents(deps: IngestDeps): Middleware {
  const { config, redis, pool, metrics, redisBreaker } = deps;
  const log = deps.logger.child({ scope: 'ingest' });
  const limits = { retentionDays: config.retentionDays, maxEventDataBytes: config.maxEventDataBytes };
  let lastFallbackLog = 0;

  /** Stores a critical request's entry in Postgres; the ids the client gets are the ones stored. */
  async function storeDirectly(payload: string, cause: unknown): Promise<void> {
    try {
      await writeEntries(pool, [decodeEntry(payload)], { statementTimeoutMs: config.dbWriteTimeoutMs });
    } catch (err) {
      log.error({ err, cause }, 'critical events could not be written to Redis nor to Postgres');
      throw queueUnavailable();
    }
    if (Date.now() - lastFallbackLog > 10_000) {
      lastFallbackLog = Date.now();
      log.warn({ cause }, 'redis write unavailable: writing critical events straight to Postgres');
    }
  }

  return async (ctx) => {
    const grant = ctx.state.grant as KeyGrant;
    const priority = ctx.state.priority as Priority;
    // Redis is known to be down and there is no fallback for this class: refuse before reading the body.
    if (priority !== 'critical' && redisBreaker.state() === 'open') throw queueUnavailable();
    const headerKey = ctx.get('idempotency-key');
    if (headerKey.length > 255) throw apiError('invalid_header', 'Idempotency-Key must be at most 255 characters');

    const encoding = checkBodyHeaders(ctx.req, config);
    const { events, batch, sentAt } = rawEvents(parseJson(await readBody(ctx.req, encoding, config)), config.maxBatchEvents);

    const receivedAt = Date.now();
    const correction = sentAt === null ? 0 : clockCorrectionMs(sentAt, receivedAt);
    const valid: ValidEvent[] = [];
    const rejected: Rejection[] = [];
    for (let i = 0; i < events.length; i++) {
      const check = checkEvent(events[i], receivedAt, limits, batch ? undefined : headerKey || undefined, correction);
      if (check.ok) valid.push(check.event);
      else rejected.push({ index: i, errors: check.errors });
    }
    if (rejected.length > 0) metrics.eventsRejected.inc({ reason: 'invalid_event' }, rejected.length);
    if (valid.length === 0) {
      throw apiError('invalid_event', batch ? 'every event of the batch is invalid' : 'the event is invalid', { rejected });
    }

    const payload = encodeEntry(grant.tenant, priority, receivedAt, valid);
    const writeStarted = performance.now();
    let status = 202;
    try {
      await redisBreaker.fire(() => redis.xadd(config.streamKey, '*', ENTRY_FIELD, payload));
      metrics.redisWriteDuration.observe({ outcome: 'ok' }, (performance.now() - writeStarted) / 1000);
    } catch (err) {
      // A call the open breaker refused never reached Redis: it has no write latency to report.
      const tried = !isBreakerRejection(err) || (err as { code?: string }).code === BREAKER_CODE.timeout;
      if (tried) metrics.redisWriteDuration.observe({ outcome: 'error' }, (performance.now() - writeStarted) / 1000);
      if (priority !== 'critical') throw queueUnavailable();
      // Should the XADD still land after its timeout, the worker's copy is a no-op: same event ids.
      await storeDirectly(payload, err);
      status = 201;
    }
    metrics.eventsAccepted.inc({ priority }, valid.length);
    metrics.batchSize.observe(valid.length);
    ctx.status = status;
    ctx.type = 'application/json';
    ctx.body = JSON.stringify({ accepted: valid.length, ids: valid.map((e) => e.id), rejected } satisfies IngestResult);
  };
}
