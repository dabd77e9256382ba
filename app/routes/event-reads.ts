import type { Middleware } from 'koa';
import type { Config } from '../../lib/config.js';
import type { Pool } from '../../lib/db.js';
import { apiError } from '../../lib/errors.js';
import type { AuthenticatedState } from '../state.js';
import { decodeCursor, getEvent, isUuid, listEvents, type EventOrder } from '../../lib/event-query.js';
import {
  invalidParameter,
  parseChoice,
  parseInteger,
  parseText,
  parseTimestamp,
  parseTypeFilter,
  queryParams,
  timedRead,
} from '../query-params.js';

const DAY_MS = 86_400_000;
const PARAMETERS = ['type', 'source', 'idempotency_key', 'since', 'until', 'limit', 'cursor', 'order'] as const;
/** Largest page of GET /v1/events. */
export const MAX_PAGE = 1000;
const DEFAULT_PAGE = 100;
const ORDERS: readonly EventOrder[] = ['desc', 'asc'];
// Events may be stamped up to 24 h ahead of their receipt (lib/event-schema.ts): the default range reaches that far.
const FUTURE_MS = DAY_MS;

/** What the event read routes need. */
export interface EventReadDeps {
  readonly config: Pick<Config, 'retentionDays' | 'queryTimeoutMs'>;
  readonly pool: Pool;
}

/**
 * GET /v1/events: the key's tenant's events, newest first by default, filtered by type (exact or `prefix*`),
 * source, idempotency key and occurred_at range; pages of `limit` (≤ 1000) follow an opaque cursor over
 * (occurred_at, id), so events sharing a timestamp are neither skipped nor repeated.
 */
export function listEventsRoute(deps: EventReadDeps): Middleware<AuthenticatedState> {
  const { config, pool } = deps;
  return async (ctx) => {
    const { grant } = ctx.state;
    const q = queryParams(ctx.query, PARAMETERS);
    const now = Date.now();
    const since = q.has('since') ? parseTimestamp('since', q.get('since')!) : now - (config.retentionDays + 1) * DAY_MS;
    const until = q.has('until') ? parseTimestamp('until', q.get('until')!) : now + FUTURE_MS;
    if (since >= until) throw invalidParameter('since', 'must be before until');
    const cursor = q.has('cursor') ? decodeCursor(q.get('cursor')!) : null;
    const order = q.has('order') ? parseChoice('order', q.get('order')!, ORDERS) : (cursor?.order ?? 'desc');
    if (cursor && cursor.order !== order)
      throw apiError('invalid_cursor', `the cursor continues a listing in ${cursor.order} order, not ${order}`);
    const filter = {
      tenant: grant.tenant,
      since,
      until,
      type: q.has('type') ? parseTypeFilter(q.get('type')!) : null,
      source: q.has('source') ? parseText('source', q.get('source')!) : null,
      idempotencyKey: q.has('idempotency_key') ? parseText('idempotency_key', q.get('idempotency_key')!) : null,
    };
    const limit = q.has('limit') ? parseInteger('limit', q.get('limit')!, 1, MAX_PAGE) : DEFAULT_PAGE;
    const page = await timedRead(() => listEvents(pool, filter, { limit, order, cursor }), config.queryTimeoutMs);
    ctx.type = 'application/json';
    ctx.body = JSON.stringify({ events: page.events, next_cursor: page.next });
  };
}

/** The `:id` of `/v1/events/:id`, lower-cased (set by the router). */
function eventId(ctx: object): string {
  return ((ctx as { params?: Record<string, string | undefined> }).params?.id ?? '').toLowerCase();
}

/**
 * Runs first on `/v1/events/:id`: a path whose last segment is not an event id is no route (404 not_found, before
 * authentication), as `/v1/events/live` is when the live view is off.
 */
export function eventIdsOnly(): Middleware {
  return async (ctx, next) => {
    if (isUuid(eventId(ctx))) await next();
    else ctx.status = 404;
  };
}

/** GET /v1/events/{id}: one event of the key's tenant; another tenant's id is as unknown as a missing one. */
export function getEventRoute(deps: EventReadDeps): Middleware<AuthenticatedState> {
  const { config, pool } = deps;
  return async (ctx) => {
    const { grant } = ctx.state;
    queryParams(ctx.query, []);
    const id = eventId(ctx);
    const event = await timedRead(() => getEvent(pool, grant.tenant, id), config.queryTimeoutMs);
    if (!event) throw apiError('event_not_found', `no event ${id}`);
    ctx.type = 'application/json';
    ctx.body = JSON.stringify(event);
  };
}
