import type { IncomingMessage } from 'node:http';
import type { KeyGrant } from '../lib/api-keys.js';
import type { ErrorCode } from '../lib/errors.js';
import type { Priority } from '../lib/event-schema.js';

/** What the API's middleware keeps in `ctx.state` (`new Koa<State>()`). */
export interface State {
  /** Set first, by the request-id middleware, on every request. */
  requestId: string;
  /** The API key's grant, once `authenticate` has run. */
  grant?: KeyGrant;
  /** The request's class on ingest, once `resolvePriority` has run. */
  priority?: Priority;
  /** The code of the error answered, set by the error middleware for the request metrics. */
  errorCode?: ErrorCode;
}

/** `ctx.state` of middleware that runs after `authenticate`. */
export type AuthenticatedState = State & { grant: KeyGrant };

/** `ctx.state` of ingest middleware that runs after `resolvePriority`. */
export type IngestState = AuthenticatedState & { priority: Priority };

/**
 * Requests the early refusal admitted before Koa saw them, so the shedder's middleware does not decide them a
 * second time (one decision per request, or the effective shed probability would compound). A WeakSet: a
 * request leaves it when it is collected.
 */
export const admittedEarly = new WeakSet<IncomingMessage>();

/**
 * The grant the early path read from the key cache for a request it let through, so authentication in Koa
 * does not parse the credentials and look the key up a second time.
 */
export const authenticatedEarly = new WeakMap<IncomingMessage, KeyGrant>();
