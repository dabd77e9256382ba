import type { Middleware, ParameterizedContext } from 'koa';
import type { KeyGrant } from '../../lib/api-keys.js';
import { ApiError, apiError, type ErrorCode } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';

/** The JSON body of every error answer. */
export interface ErrorBody {
  error: ErrorCode;
  message: string;
  request_id: string;
  details?: unknown;
}

function render(ctx: ParameterizedContext, err: ApiError): void {
  ctx.status = err.status;
  for (const [name, value] of Object.entries(err.headers ?? {})) ctx.set(name, value);
  const body: ErrorBody = { error: err.code, message: err.message, request_id: String(ctx.state.requestId ?? '') };
  if (err.details !== undefined) body.details = err.details;
  // Serialised here rather than by Koa so that measuring the response size does not stringify it again.
  ctx.state.errorCode = err.code;
  ctx.type = 'application/json';
  ctx.body = JSON.stringify(body);
}

/**
 * Turns every failure into `{error, message, request_id, details?}`: ApiErrors with their catalogue status,
 * router 404/405/501 into not_found/method_not_allowed, and anything else into a 500 that leaks nothing.
 */
export function errorHandler(logger: Logger): Middleware {
  return async (ctx, next) => {
    try {
      await next();
      if (ctx.body === undefined || ctx.body === null) {
        if (ctx.status === 404) render(ctx, apiError('not_found', `no route for ${ctx.method} ${ctx.path}`));
        else if (ctx.status === 405 || ctx.status === 501) {
          const allow = ctx.response.get('Allow');
          render(ctx, apiError('method_not_allowed', `${ctx.method} is not allowed on ${ctx.path}`, undefined, allow ? { Allow: allow } : undefined));
        }
      }
    } catch (err) {
      if (err instanceof ApiError) {
        render(ctx, err);
        return;
      }
      // The tenant (once authenticated) and request id on the line, so one customer's failures can be found.
      const tenant = (ctx.state.grant as KeyGrant | undefined)?.tenant;
      logger.child({ reqId: String(ctx.state.requestId ?? ''), ...(tenant === undefined ? {} : { tenant }) }).error({ err, method: ctx.method, path: ctx.path }, 'unhandled error');
      render(ctx, apiError('internal_error', 'internal error'));
    }
  };
}
