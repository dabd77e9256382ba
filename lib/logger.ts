import { pino, stdSerializers, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/** Shown instead of a redacted value. */
export const REDACTED = '[redacted]';

// Credentials a log line must never carry, wherever a request's headers end up: a logged request (`req`, serialised
// with its headers), a `headers` object, or one level deeper. Node lowercases incoming header names; objects built
// by hand (fetch options, test helpers) often keep the canonical capitals, so both spellings are listed.
const SECRET_HEADERS = ['authorization', 'Authorization', 'x-api-key', 'X-Api-Key', 'X-API-Key'];
const REDACT_PATHS = SECRET_HEADERS.flatMap((h) => [`headers["${h}"]`, `*.headers["${h}"]`, `*.*.headers["${h}"]`]);

/** Serialises an Error with its `cause` chain as nested objects (type, message, stack, code…), anything else as it is. */
const error = stdSerializers.errWithCause;

/**
 * A JSON logger to stdout (or `destination`); `role` tags every line with the process's part (api, worker, cli).
 * Errors are serialised under `err` (and `cause`, `errors`) with their cause chain, never as `{}`; Authorization and
 * X-Api-Key headers are redacted. Scope such as `tenant` or `reqId` goes on child loggers.
 */
export function createLogger(level: string, role: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { role, pid: process.pid },
    redact: { paths: REDACT_PATHS, censor: REDACTED },
    serializers: {
      err: error,
      cause: error,
      errors: (errors: unknown) => (Array.isArray(errors) ? errors.map(error) : error(errors as Error)),
      req: stdSerializers.req,
    },
  };
  return destination ? pino(options, destination) : pino(options);
}
