import type { Middleware } from 'koa';
import { withinCeiling } from '../lib/api-keys.js';
import { apiError } from '../lib/errors.js';
import { isPriority, type Priority } from '../lib/event-schema.js';
import type { AuthenticatedState } from './state.js';

/** The request header that names a request's class; without it the API key's default class applies. */
export const PRIORITY_HEADER = 'x-priority';

/**
 * The class an X-Priority value names, or undefined when it names none. Case and surrounding blanks are
 * ignored. The one rule both the early refusal (before Koa) and the Koa middleware apply.
 */
export function parsePriority(value: string): Priority | undefined {
  const priority = value.trim().toLowerCase();
  return isPriority(priority) ? priority : undefined;
}

/** Sets `ctx.state.priority` from `X-Priority` (403 above the key's ceiling), else the key's default; runs before shedding needs it. */
export function resolvePriority(): Middleware<AuthenticatedState> {
  return async (ctx, next) => {
    const header = ctx.get(PRIORITY_HEADER);
    if (!header) ctx.state.priority = ctx.state.grant.defaultPriority;
    else {
      const priority = parsePriority(header);
      if (priority === undefined)
        throw apiError('invalid_header', `X-Priority must be critical, normal or low, got "${header.slice(0, 50)}"`);
      const ceiling = ctx.state.grant.maxPriority;
      if (!withinCeiling(priority, ceiling)) {
        // Connection: close, so a refused body is not read and discarded to keep the connection alive.
        throw apiError('priority_not_allowed', `this API key may send ${ceiling} traffic at most, not ${priority}`, undefined, {
          Connection: 'close',
        });
      }
      ctx.state.priority = priority;
    }
    await next();
  };
}
