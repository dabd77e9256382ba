import { randomUUID } from 'node:crypto';
import type { Middleware } from 'koa';
import type { State } from '../state.js';

/** The header a request id comes in and goes back out in. */
export const REQUEST_ID_HEADER = 'X-Request-Id';

/** The X-Request-Id values echoed back; anything else is replaced by a fresh id. */
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * The id of a request: its `X-Request-Id` when well formed (so it needs no escaping in JSON, logs or headers),
 * else a fresh UUID. The one rule both the early refusal (before Koa) and the Koa middleware apply.
 */
export function requestIdFrom(given: string | string[] | undefined): string {
  return typeof given === 'string' && SAFE_REQUEST_ID.test(given) ? given : randomUUID();
}

/** Echoes a well-formed `X-Request-Id` or generates one, on every response; kept in `ctx.state.requestId`. */
export function requestId(): Middleware<State> {
  return async (ctx, next) => {
    const id = requestIdFrom(ctx.get(REQUEST_ID_HEADER) || undefined);
    ctx.state.requestId = id;
    ctx.set(REQUEST_ID_HEADER, id);
    await next();
  };
}
