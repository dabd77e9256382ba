import { prepared, type Pool, type Statement } from './db.js';
import { apiError } from './errors.js';
import type { TypePattern } from './type-pattern.js';

/** An event as the query API returns it. */
export interface StoredEvent {
  readonly id: string;
  readonly type: string;
  readonly timestamp: string;
  readonly received_at: string;
  readonly source: string | null;
  readonly idempotency_key: string | null;
  readonly priority: string;
  readonly value: number | null;
  readonly data: unknown;
}

export type EventOrder = 'asc' | 'desc';

/** Where a page ends: the (occurred_at, id) of its last event, and the direction it was read in. */
export interface EventCursor {
  readonly order: EventOrder;
  /** occurred_at at full (microsecond) precision, as Postgres prints it in UTC. */
  readonly at: string;
  readonly id: string;
}

/** Which events of one tenant to list: `since` inclusive, `until` exclusive (epoch ms). */
export interface EventFilter {
  readonly tenant: string;
  readonly since: number;
  readonly until: number;
  readonly type: TypePattern | null;
  readonly source: string | null;
  readonly idempotencyKey: string | null;
}

/** One page and the cursor of the next (null on the last page). */
export interface EventPage {
  readonly events: StoredEvent[];
  readonly next: string | null;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const MICROS_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const CURSOR_VERSION = 'e1';

/** Whether `id` is a UUID in canonical lower-case form. */
export function isUuid(id: string): boolean {
  return UUID.test(id);
}

/** An opaque cursor: base64url of its fields; clients pass it back unchanged. */
export function encodeCursor(cursor: EventCursor): string {
  return Buffer.from(`${CURSOR_VERSION}|${cursor.order}|${cursor.at}|${cursor.id}`).toString('base64url');
}

/** Parses a cursor made by encodeCursor; anything else is a 400 invalid_cursor. */
export function decodeCursor(text: string): EventCursor {
  const parts = /^[A-Za-z0-9_-]{1,200}$/.test(text) ? Buffer.from(text, 'base64url').toString('utf8').split('|') : [];
  const [version, order, at, id] = parts;
  if (
    parts.length !== 4 ||
    version !== CURSOR_VERSION ||
    (order !== 'asc' && order !== 'desc') ||
    !MICROS_UTC.test(at!) ||
    Number.isNaN(Date.parse(at!)) ||
    !isUuid(id!)
  ) {
    throw apiError('invalid_cursor', 'the cursor is not one this API returned; start again without it');
  }
  return { order, at: at!, id: id! };
}

interface EventRow {
  id: string;
  type: string;
  occurred_at: Date;
  occurred_text: string;
  received_at: Date;
  source: string | null;
  idempotency_key: string | null;
  priority: string;
  value: number | null;
  data: unknown;
}

const SELECT = `SELECT id, type, occurred_at, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS occurred_text,
  received_at, source, idempotency_key, priority, value, data FROM events`;

function toEvent(r: EventRow): StoredEvent {
  return {
    id: r.id,
    type: r.type,
    timestamp: r.occurred_at.toISOString(),
    received_at: r.received_at.toISOString(),
    source: r.source,
    idempotency_key: r.idempotency_key,
    priority: r.priority,
    value: r.value,
    data: r.data,
  };
}

/** Which page of a listing to read. */
export interface PageRequest {
  readonly limit: number;
  readonly order: EventOrder;
  readonly cursor: EventCursor | null;
}

/**
 * The statement listEvents runs (one row more than the page, to know whether another follows). The occurred_at
 * range lets the planner prune partitions; the row comparison against the cursor is a bound of the
 * (tenant, occurred_at, id) index scan, so a deep page costs what the first one does (no OFFSET).
 */
export function listEventsQuery(filter: EventFilter, page: PageRequest): Statement {
  const values: unknown[] = [filter.tenant, new Date(filter.since), new Date(filter.until)];
  const where = ['tenant = $1', 'occurred_at >= $2', 'occurred_at < $3'];
  const param = (value: unknown) => `$${values.push(value)}`;
  if (filter.type)
    where.push('exact' in filter.type ? `type = ${param(filter.type.exact)}` : `starts_with(type, ${param(filter.type.prefix)})`);
  if (filter.source !== null) where.push(`source = ${param(filter.source)}`);
  if (filter.idempotencyKey !== null) where.push(`idempotency_key = ${param(filter.idempotencyKey)}`);
  const { order, cursor } = page;
  const after = order === 'desc' ? '<' : '>';
  if (cursor) where.push(`(occurred_at, id) ${after} (${param(cursor.at)}::timestamptz, ${param(cursor.id)}::uuid)`);
  const direction = order === 'desc' ? 'DESC' : 'ASC';
  const text = `${SELECT} WHERE ${where.join(' AND ')} ORDER BY occurred_at ${direction}, id ${direction} LIMIT ${param(page.limit + 1)}`;
  return { text, values };
}

/** One page of a tenant's events in (occurred_at, id) order, after `page.cursor` when given. */
export async function listEvents(pool: Pool, filter: EventFilter, page: PageRequest): Promise<EventPage> {
  const { order } = page;
  const { rows } = await pool.query<EventRow>(prepared(listEventsQuery(filter, page)));
  const more = rows.length > page.limit;
  const kept = more ? rows.slice(0, page.limit) : rows;
  const last = kept.at(-1);
  return { events: kept.map(toEvent), next: more && last ? encodeCursor({ order, at: last.occurred_text, id: last.id }) : null };
}

/** One event of a tenant by id: one probe of each daily partition's primary key (id, occurred_at). */
export async function getEvent(pool: Pool, tenant: string, id: string): Promise<StoredEvent | null> {
  const { rows } = await pool.query<EventRow>(prepared({ text: `${SELECT} WHERE id = $1 AND tenant = $2`, values: [id, tenant] }));
  return rows[0] ? toEvent(rows[0]) : null;
}
