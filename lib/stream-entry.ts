import type { Priority, ValidEvent } from './event-schema.js';

/** Field name of the payload inside a stream entry. */
export const ENTRY_FIELD = 'e';
const FORMAT_VERSION = 1;

/** One accepted request as it travels through the stream to the worker. */
export interface StreamEntry {
  readonly tenant: string;
  readonly priority: Priority;
  readonly receivedAt: number;
  readonly events: readonly StreamEvent[];
}

/** An event as the worker sees it; `data` is parsed JSON (an object) or null. */
export interface StreamEvent {
  readonly id: string;
  readonly type: string;
  readonly occurredAt: number;
  readonly source: string | null;
  readonly idempotencyKey: string | null;
  readonly value: number | null;
  readonly data: Record<string, unknown> | null;
}

/** Serialises an accepted request; `data` is spliced in from the JSON made during validation. */
export function encodeEntry(tenant: string, priority: Priority, receivedAt: number, events: readonly ValidEvent[]): string {
  let out = `{"v":${FORMAT_VERSION},"t":${JSON.stringify(tenant)},"p":"${priority}","r":${receivedAt},"e":[`;
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    if (i > 0) out += ',';
    out += `["${e.id}",${JSON.stringify(e.type)},${e.occurredAt},${JSON.stringify(e.source)},${JSON.stringify(e.idempotencyKey)},${e.value === null ? 'null' : e.value},${e.dataJson ?? 'null'}]`;
  }
  return out + ']}';
}

type WireEvent = [string, string, number, string | null, string | null, number | null, Record<string, unknown> | null];

/** Parses a stream entry's payload; throws on anything that is not a well-formed entry. */
export function decodeEntry(payload: string): StreamEntry {
  const raw = JSON.parse(payload) as { v: number; t: string; p: Priority; r: number; e: WireEvent[] };
  if (raw.v !== FORMAT_VERSION || typeof raw.t !== 'string' || !Array.isArray(raw.e)) {
    throw new Error(`unsupported stream entry (version ${String(raw.v)})`);
  }
  return {
    tenant: raw.t,
    priority: raw.p,
    receivedAt: raw.r,
    events: raw.e.map(([id, type, occurredAt, source, idempotencyKey, value, data]) => ({ id, type, occurredAt, source, idempotencyKey, value, data })),
  };
}
