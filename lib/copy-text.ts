import type { Priority, ValidEvent } from './event-schema.js';

/**
 * Columns of one COPY row, as the API writes them into stream entries and the worker copies them into the
 * staging table. Times are epoch milliseconds (cheaper to print and to parse than ISO text); the merge
 * statement converts them.
 */
export const COPY_COLUMNS = [
  'id',
  'tenant',
  'type',
  'occurred_ms',
  'received_ms',
  'source',
  'idempotency_key',
  'priority',
  'value',
  'data',
] as const;

/** What one COPY row needs of an event: a validated event with its serialised `data`. */
export type CopyEvent = ValidEvent;

const NEEDS_ESCAPE = /[\\\t\n\r]/;
const ESCAPE = /[\\\t\n\r]/g;
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/** Escapes a value for COPY's text format (backslash, tab, newline, CR); null becomes `\N`. */
export function copyText(value: string | null): string {
  if (value === null) return '\\N';
  return NEEDS_ESCAPE.test(value) ? value.replace(ESCAPE, (c) => ESCAPES[c]!) : value;
}

/** One line of COPY text, newline included; tenant and priority come pre-escaped from the caller's header. */
export function copyTextRow(tenant: string, priority: Priority, receivedAt: number, e: CopyEvent): string {
  return (
    e.id +
    '\t' +
    tenant +
    '\t' +
    copyText(e.type) +
    '\t' +
    e.occurredAt +
    '\t' +
    receivedAt +
    '\t' +
    copyText(e.source) +
    '\t' +
    copyText(e.idempotencyKey) +
    '\t' +
    priority +
    '\t' +
    (e.value === null ? '\\N' : String(e.value)) +
    '\t' +
    copyText(e.dataJson) +
    '\n'
  );
}

const UNESCAPES: Record<string, string> = { '\\\\': '\\', '\\t': '\t', '\\n': '\n', '\\r': '\r' };

/** The inverse of copyText, for reading rows back (tests, dead-letter inspection). */
export function parseCopyText(field: string): string | null {
  if (field === '\\N') return null;
  // Most fields hold no escape at all: the scan is cheaper than a regex replace that finds nothing.
  return field.includes('\\') ? field.replace(/\\[\\tnr]/g, (s) => UNESCAPES[s]!) : field;
}

/** A COPY row read back into its fields. */
export interface CopyRow {
  id: string;
  tenant: string;
  type: string;
  occurredAt: number;
  receivedAt: number;
  source: string | null;
  idempotencyKey: string | null;
  priority: string;
  value: number | null;
  data: unknown;
}

/** Parses COPY text rows (as produced by copyTextRow) back into objects. */
export function parseCopyRows(text: string): CopyRow[] {
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const f = line.split('\t').map(parseCopyText);
      const data = f[9];
      return {
        id: f[0]!,
        tenant: f[1]!,
        type: f[2]!,
        occurredAt: Number(f[3]),
        receivedAt: Number(f[4]),
        source: f[5] ?? null,
        idempotencyKey: f[6] ?? null,
        priority: f[7]!,
        value: f[8] == null ? null : Number(f[8]),
        data: data == null ? null : (JSON.parse(data) as unknown),
      };
    });
}
