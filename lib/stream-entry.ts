import { copyText, copyTextRow } from './copy-text.js';
import type { Priority, ValidEvent } from './event-schema.js';

/** Field name of the payload inside a stream entry. */
export const ENTRY_FIELD = 'e';
const FORMAT_VERSION = 2;

/**
 * One accepted request as it travels through the stream: a JSON header line, then its events as ready-made
 * COPY text rows. The API encodes each event once, while its `data` is already serialised; the worker only
 * concatenates rows into its COPY stream, so the per-event cost of the flush path is Postgres's alone.
 */
export interface StreamEntry {
  readonly tenant: string;
  readonly priority: Priority;
  readonly receivedAt: number;
  /** Number of events (rows). */
  readonly count: number;
  /** COPY text rows, each ending in a newline. */
  readonly rows: string;
}

/** An entry as a queue delivered it: `queueId` names it in its queue, the same on every delivery of it. */
export interface QueuedEntry {
  readonly queueId: string;
  readonly entry: StreamEntry;
}

/**
 * The header line of an entry around its event count: `prefix + count + suffix`. Split so that a writer that
 * decides in Redis which events to keep (the idempotent enqueue script) can put in the count it kept.
 */
export function entryHeader(tenant: string, priority: Priority, receivedAt: number): { readonly prefix: string; readonly suffix: string } {
  return { prefix: `{"v":${FORMAT_VERSION},"t":${JSON.stringify(tenant)},"p":"${priority}","r":${receivedAt},"n":`, suffix: '}\n' };
}

/** The COPY text row of each event, in order. */
export function entryRows(tenant: string, priority: Priority, receivedAt: number, events: readonly ValidEvent[]): string[] {
  const t = copyText(tenant);
  return events.map((e) => copyTextRow(t, priority, receivedAt, e));
}

/** Serialises an accepted request's events for the stream. */
export function encodeEntry(tenant: string, priority: Priority, receivedAt: number, events: readonly ValidEvent[]): string {
  const { prefix, suffix } = entryHeader(tenant, priority, receivedAt);
  let out = prefix + events.length + suffix;
  const t = copyText(tenant);
  for (let i = 0; i < events.length; i++) out += copyTextRow(t, priority, receivedAt, events[i]!);
  return out;
}

function countLines(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/** Parses a stream entry's payload; throws on anything that is not a well-formed entry. */
export function decodeEntry(payload: string): StreamEntry {
  const headerEnd = payload.indexOf('\n');
  if (headerEnd < 0) throw new Error('no header line');
  const header = JSON.parse(payload.slice(0, headerEnd)) as { v: unknown; t: unknown; p: unknown; r: unknown; n: unknown };
  if (header.v !== FORMAT_VERSION) throw new Error(`unsupported stream entry version ${String(header.v)}`);
  if (typeof header.t !== 'string' || typeof header.r !== 'number' || typeof header.n !== 'number' || typeof header.p !== 'string') {
    throw new Error('malformed header');
  }
  const rows = payload.slice(headerEnd + 1);
  // A truncated or padded entry must not reach COPY, where it would fail the whole batch.
  if (!rows.endsWith('\n') || countLines(rows) !== header.n) throw new Error(`expected ${header.n} rows`);
  return { tenant: header.t, priority: header.p as Priority, receivedAt: header.r, count: header.n, rows };
}
