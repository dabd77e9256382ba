import type { Middleware, ParameterizedContext } from 'koa';
import { ApiError, apiError, ERROR_CONTENT_TYPE, errorBody } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import { CLIENT_CLOSED_STATUS, ClientClosedRequest } from '../body.js';
import type { State } from '../state.js';

function render(ctx: ParameterizedContext<State>, err: ApiError): void {
  ctx.status = err.status;
  for (const [name, value] of Object.entries(err.headers ?? {})) ctx.set(name, value);
  ctx.state.errorCode = err.code;
  ctx.type = ERROR_CONTENT_TYPE;
  // Serialised here rather than by Koa so that measuring the response size does not stringify it again.
  ctx.body = errorBody(err, ctx.state.requestId);
}

/**
 * Turns every failure into `{error, message, request_id, details?}`: ApiErrors with their catalogue status,
 * router 404/405/501 into not_found/method_not_allowed, and anything else into a 500 that leaks nothing. A
 * client that went away mid-body gets no answer and is measured as 499.
 */
export function errorHandler(logger: Logger): Middleware<State> {
  return async (ctx, next) => {
    try {
      await next();
      if (ctx.body === undefined || ctx.body === null) {
        if (ctx.status === 404) render(ctx, apiError('not_found', `no route for ${ctx.method} ${ctx.path}`));
        else if (ctx.status === 405 || ctx.status === 501) {
          const allow = ctx.response.get('Allow');
          render(
            ctx,
            apiError('method_not_allowed', `${ctx.method} is not allowed on ${ctx.path}`, undefined, allow ? { Allow: allow } : undefined),
          );
        }
      }
    } catch (err) {
      if (err instanceof ApiError) {
        render(ctx, err);
        return;
      }
      if (err instanceof ClientClosedRequest) {
        // No one to answer: the status is for the request metrics, and there is nothing to log but at debug.
        ctx.status = CLIENT_CLOSED_STATUS;
        logger.debug({ reqId: ctx.state.requestId, method: ctx.method, path: ctx.path }, 'client closed the request');
        return;
      }
      // The tenant (once authenticated) and request id on the line, so one customer's failures can be found.
      const tenant = ctx.state.grant?.tenant;
      logger
        .child({ reqId: ctx.state.requestId, ...(tenant === undefined ? {} : { tenant }) })
        .error({ err, method: ctx.method, path: ctx.path }, 'unhandled error');
      render(ctx, apiError('internal_error', 'internal error'));
    }
  };
}
