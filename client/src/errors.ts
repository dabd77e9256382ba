// What the client reports when events are not delivered: one error type with a stable code, the events it
// concerns and, for answers from the server, the status and the API's own error code.
import type { Priority, TrackEvent } from './options.js';

/** Why events were not delivered. */
export const ERROR_CODES = {
  /** The server refused individual events (a 202's `rejected` list, or 422 when all were invalid); not retried. */
  event_rejected: 'the server rejected these events as invalid',
  /** The whole request was refused with a 4xx other than 408 and 429 (bad key, too large…); not retried. */
  batch_refused: 'the server refused the request; it is not retried',
  /** Transient failures outlasted `maxRetries`. */
  retries_exhausted: 'transient failures outlasted the retries',
  /** The bounded queue was full: the lowest class present was dropped first. */
  queue_full: 'the queue was full; events of the lowest class were dropped',
  /** One event's JSON is larger than `flushBytes`: it could never be sent. */
  event_too_large: 'the event is larger than flushBytes',
  /** Tracked after `close()`, or still undelivered when `close()` reached its deadline (an event in flight then may have been stored). */
  client_closed: 'the client was closed before these events were delivered',
} as const;
export type ErrorCode = keyof typeof ERROR_CODES;

/** An event the error concerns. */
export interface FailedEvent {
  readonly key: string;
  readonly priority: Priority;
  readonly event: TrackEvent;
  /** Field errors from the server, for `event_rejected`. */
  readonly errors?: ReadonlyArray<{ readonly path: string; readonly message: string }>;
}

/** An undelivered outcome: what `onError` receives. */
export class FloodgateError extends Error {
  override readonly name = 'FloodgateError';
  readonly code: ErrorCode;
  readonly events: readonly FailedEvent[];
  /** The HTTP status of the last answer, when there was one. */
  readonly status: number | null;
  /** The API's error code (`unauthorized`, `payload_too_large`…) or the network error's code (`ECONNRESET`, `timeout`). */
  readonly reason: string | null;

  constructor(
    code: ErrorCode,
    events: readonly FailedEvent[],
    detail: { status?: number | null; reason?: string | null; message?: string } = {},
  ) {
    super(`${ERROR_CODES[code]} (${events.length} event${events.length === 1 ? '' : 's'})${detail.message ? `: ${detail.message}` : ''}`);
    this.code = code;
    this.events = events;
    this.status = detail.status ?? null;
    this.reason = detail.reason ?? null;
  }
}
