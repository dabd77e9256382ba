import { randomUUID } from 'node:crypto';
import type { Middleware } from 'koa';

/** The X-Request-Id values echoed back; anything else is replaced by a fresh id. */
export const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Echoes a well-formed `X-Request-Id` or generates one, on every response; kept in `ctx.state.requestId`. */
export function requestId(): Middleware {
  return async (ctx, next) => {
    const given = ctx.get('x-request-id');
    const id = given && SAFE_REQUEST_ID.test(given) ? given : randomUUID();
    ctx.state.requestId = id;
    ctx.set('X-Request-Id', id);
    await next();
  };
}
