import type { Priority } from './event-schema.js';

/** Columns of `events` in the order COPY rows are written. */
export const EVENT_COLUMNS = ['id', 'tenant', 'type', 'occurred_at', 'received_at', 'source', 'idempotency_key', 'priority', 'value', 'data'] as const;

/** What one COPY row needs of an event; `dataJson` is the serialised `data` object or null. */
export interface CopyEvent {
  readonly id: string;
  readonly type: string;
  readonly occurredAt: number;
  readonly source: string | null;
  readonly idempotencyKey: string | null;
  readonly value: number | null;
  readonly dataJson: string | null;
}

const NEEDS_ESCAPE = /[\\\t\n\r]/;
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/** Escapes a value for COPY's text format (backslash, tab, newline, CR); null becomes `\N`. */
export function copyText(value: string | null): string {
  if (value === null) return '\\N';
  return NEEDS_ESCAPE.test(value) ? value.replace(/[\\\t\n\r]/g, (c) => ESCAPES[c]!) : value;
}

/** One line of COPY text for the events table, newline included. */
export function copyTextRow(tenant: string, priority: Priority, receivedAt: number, e: CopyEvent): string {
  return (
    `${e.id}\t${copyText(tenant)}\t${copyText(e.type)}\t${new Date(e.occurredAt).toISOString()}\t${new Date(receivedAt).toISOString()}\t` +
    `${copyText(e.source)}\t${copyText(e.idempotencyKey)}\t${priority}\t${e.value === null ? '\\N' : String(e.value)}\t${copyText(e.dataJson)}\n`
  );
}
