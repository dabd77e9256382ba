import type { Middleware } from 'koa';
import type { Breaker } from '../../lib/breaker.js';
import type { Config } from '../../lib/config.js';
import type { Pool } from '../../lib/db.js';
import { apiError, type ApiError } from '../../lib/errors.js';
import { writeEntries } from '../../lib/pg-batch-write.js';
import { dataTexts } from '../../lib/data-text.js';
import { checkEvent, clockCorrectionMs, dataTextLimits, parseSentAt, type FieldError, type ValidEvent } from '../../lib/event-schema.js';
import type { Logger } from '../../lib/logger.js';
import type { Enqueuer } from '../../lib/queue.js';
import { entryRows, type StreamEntry } from '../../lib/stream-entry.js';
import { checkBodyHeaders, parseJson, readBody } from '../body.js';
import type { ApiMetrics } from '../metrics.js';
import { jitteredRetryAfter } from '../retry-after.js';
import type { IngestState } from '../state.js';

/** The path events are sent to. */
export const INGEST_ROUTE = '/v1/events';

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

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function hasData(event: unknown): boolean {
  return isPlainObject(event) && event.data !== undefined;
}

/** Splits a parsed body into the raw events it carries and the batch's `sent_at` (ms), enforcing the batch shape (lib/event-schema.ts batchSchema). */
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
  /** The queue (Redis stream or Postgres table: lib/queue.ts). */
  readonly enqueuer: Enqueuer;
  /** For critical events while Redis cannot take them. */
  readonly pool: Pool;
  readonly metrics: ApiMetrics;
  /** Guards the XADD: open, it answers non-critical requests 503 before their body is read. */
  readonly redisBreaker: Breaker;
  readonly logger: Logger;
  /** Takes a request's valid events from its tenant's quotas; throws 429 quota_exceeded when one is spent. */
  readonly chargeEvents?: (tenant: string, events: number) => void | Promise<void>;
}

function queueUnavailable(): ApiError {
  return apiError('dependency_unavailable', 'the queue cannot take the events right now; nothing was accepted', undefined, {
    'Retry-After': jitteredRetryAfter(),
  });
}

/**
 * POST /v1/events: validate at the edge, put one stream entry per request, answer 202 once Redis has it, with
 * the id of each event (for a repeated idempotency key, the id answered first: see app/enqueue.ts).
 * When the write fails, times out or its breaker is open, critical events are written straight to Postgres
 * through the worker's own exactly-once path (same ids, same idempotency-key claim) and answered 201 with the
 * ids stored; everything else gets 503 dependency_unavailable.
 */
export function ingestEvents(deps: IngestDeps): Middleware<IngestState> {
  const { config, pool, metrics, redisBreaker, enqueuer } = deps;
  const ingestLog = deps.logger.child({ scope: 'ingest' });
  const limits = { retentionDays: config.retentionDays, maxEventDataBytes: config.maxEventDataBytes };
  const textLimits = dataTextLimits(limits);
  let lastFallbackLog = 0;

  /**
   * Stores a critical request's events in Postgres; resolves with the ids stored, which the client gets. `log` names
   * the request.
   */
  async function storeDirectly(log: Logger, entry: StreamEntry, events: readonly ValidEvent[], cause: unknown): Promise<string[]> {
    try {
      await writeEntries(pool, [entry], { statementTimeoutMs: config.dbWriteTimeoutMs });
    } catch (err) {
      log.error({ err, cause }, 'critical events could not be written to Redis nor to Postgres');
      throw queueUnavailable();
    }
    if (Date.now() - lastFallbackLog > 10_000) {
      lastFallbackLog = Date.now();
      log.warn({ cause }, 'redis write unavailable: writing critical events straight to Postgres');
    }
    return enqueuer.afterDirectWrite(entry.tenant, events);
  }

  return async (ctx) => {
    const { grant, priority } = ctx.state;
    // Redis is known to be down and there is no fallback for this class: refuse before reading the body.
    if (priority !== 'critical' && redisBreaker.state() === 'open') throw queueUnavailable();
    const headerKey = ctx.get('idempotency-key');
    if (headerKey.length > 255) throw apiError('invalid_header', 'Idempotency-Key must be at most 255 characters');

    const encoding = checkBodyHeaders(ctx.req, config);
    const body = parseJson(await readBody(ctx.req, encoding, config), textLimits);
    const { events, batch, sentAt } = rawEvents(body.value, config.maxBatchEvents);
    // One key for many events cannot say which of them it identifies: each event of a batch carries its own.
    if (batch && headerKey) {
      throw apiError(
        'idempotency_key_on_batch',
        'the Idempotency-Key header applies to a single event; give each event of a batch its own "idempotency_key"',
      );
    }

    const receivedAt = Date.now();
    const correction = sentAt === null ? 0 : clockCorrectionMs(sentAt, receivedAt);
    // Each event's `data` as sent, where it may be stored so: not serialised again (lib/data-text.ts). Given by the
    // parser when it did not build `data` (lib/event-body.ts); otherwise found by a scan, unless there is no `data`.
    const texts = body.texts ?? (events.some(hasData) ? dataTexts(body.text, batch, events.length, textLimits) : undefined);
    const valid: ValidEvent[] = [];
    const rejected: Rejection[] = [];
    for (let i = 0; i < events.length; i++) {
      const check = checkEvent(events[i], receivedAt, limits, headerKey || undefined, correction, texts?.[i]);
      if (check.ok) valid.push(check.event);
      else rejected.push({ index: i, errors: check.errors });
    }
    if (rejected.length > 0) metrics.eventsRejected.inc({ reason: 'invalid_event' }, rejected.length);
    if (valid.length === 0) {
      throw apiError('invalid_event', batch ? 'every event of the batch is invalid' : 'the event is invalid', { rejected });
    }

    // Quotas count accepted events, known only now: a spent quota refuses the whole request, nothing accepted.
    const charged = deps.chargeEvents?.(grant.tenant, valid.length);
    if (charged) await charged;

    let ids: string[];
    let status = 202;
    try {
      ids = await enqueuer.enqueue(grant.tenant, priority, receivedAt, valid);
    } catch (err) {
      if (priority !== 'critical') throw queueUnavailable();
      // Should the write still land after its timeout, the worker's copy is a no-op: same event ids.
      const rows = entryRows(grant.tenant, priority, receivedAt, valid).join('');
      // A child logger so each line of this request says whose events they were and which request.
      const requestLog = ingestLog.child({ tenant: grant.tenant, reqId: ctx.state.requestId });
      ids = await storeDirectly(requestLog, { tenant: grant.tenant, priority, receivedAt, count: valid.length, rows }, valid, err);
      status = 201;
    }
    metrics.eventsAccepted.inc({ priority }, valid.length);
    metrics.batchSize.observe(valid.length);
    ctx.status = status;
    ctx.type = 'application/json';
    ctx.body = JSON.stringify({ accepted: valid.length, ids, rejected } satisfies IngestResult);
  };
}
