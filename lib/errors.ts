/**
 * The catalogue of errors a client can see. Each code is stable: clients branch on it, docs/api.md documents
 * it (a test keeps the two in step), and the message is safe to show.
 */
export const ERROR_CATALOGUE = {
  malformed_json: { status: 400, description: 'The body is not valid UTF-8 JSON.' },
  invalid_body: { status: 400, description: 'The JSON is neither an event object nor `{"events": [...]}`.' },
  invalid_header: { status: 400, description: 'A header has an invalid value (`X-Priority`, `Idempotency-Key`).' },
  invalid_parameter: { status: 400, description: 'A query parameter is unknown, repeated, malformed or out of range; `details.parameter` names it.' },
  invalid_cursor: { status: 400, description: 'The `cursor` of `GET /v1/events` is not one the API returned (or asks for the other order).' },
  too_many_buckets: { status: 400, description: '`window` / `step` of `GET /v1/stats` gives more buckets than `STATS_MAX_BUCKETS`; take a coarser step.' },
  unauthorized: { status: 401, description: 'The API key is missing, unknown, revoked or expired.' },
  forbidden: { status: 403, description: 'The API key lacks the scope this endpoint needs (`ingest`, `read` or `admin`).' },
  not_found: { status: 404, description: 'No such route.' },
  event_not_found: { status: 404, description: 'No event with this id for the key\'s tenant (or it is past retention).' },
  method_not_allowed: { status: 405, description: 'The route exists but not with this method (see `Allow`).' },
  payload_too_large: { status: 413, description: 'The body exceeds `MAX_BODY_BYTES`, or `MAX_DECOMPRESSED_BYTES` once decompressed.' },
  batch_too_large: { status: 413, description: 'The batch holds more than `MAX_BATCH_EVENTS` events.' },
  unsupported_media_type: { status: 415, description: 'The `Content-Type` is not `application/json`.' },
  unsupported_encoding: { status: 415, description: 'The `Content-Encoding` is not `gzip` or `identity`, or the gzip stream is corrupt.' },
  invalid_event: { status: 422, description: 'Every event of the request failed validation; `details` lists why, per event.' },
  empty_batch: { status: 422, description: 'The batch holds no events.' },
  too_many_points: { status: 422, description: 'The stats answer would hold more than `STATS_MAX_POINTS` points (buckets × groups); narrow the type filter, drop `group_by` or take a coarser step.' },
  rate_limited: { status: 429, description: "The API key exceeded its rate limit (token bucket); retry after `Retry-After` seconds, when a token is available." },
  overloaded: { status: 503, description: 'Shed by the load shedder (the controller, an open class gate or a hard limit) to protect higher-priority traffic; retry after `Retry-After` seconds.' },
  dependency_unavailable: { status: 503, description: 'Redis could not take the write or its breaker is open, and the request is not critical (critical events then go to Postgres: 201); or neither could take it. Nothing was accepted; retry after `Retry-After` seconds.' },
  not_ready: { status: 503, description: 'From `/readyz`: a dependency is unreachable or migrations are not applied.' },
  query_timeout: { status: 503, description: 'A query ran longer than `QUERY_TIMEOUT_MS` and was cancelled; narrow the window or the filters.' },
  internal_error: { status: 500, description: 'An unexpected failure; nothing internal is exposed. The request id finds it in the logs.' },
} as const satisfies Record<string, { status: number; description: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** An error the API answers with its catalogue status and code; `message` is shown to the client. */
export class ApiError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
    readonly headers?: Readonly<Record<string, string>>,
  ) {
    super(message);
    this.name = 'ApiError';
    this.status = ERROR_CATALOGUE[code].status;
  }
}

/** Builds an ApiError; the one way route code signals a client-visible failure. */
export function apiError(code: ErrorCode, message: string, details?: unknown, headers?: Record<string, string>): ApiError {
  return new ApiError(code, message, details, headers);
}

/** PostgreSQL SQLSTATEs the code reacts to (https://www.postgresql.org/docs/15/errcodes-appendix.html). */
export const SQLSTATE = {
  /** unique_violation */
  uniqueViolation: '23505',
  /** invalid_catalog_name: the database does not exist */
  invalidCatalogName: '3D000',
  /** undefined_table */
  undefinedTable: '42P01',
  /** duplicate_table: e.g. a partition created concurrently */
  duplicateTable: '42P07',
  /** serialization_failure */
  serializationFailure: '40001',
  /** deadlock_detected */
  deadlockDetected: '40P01',
  /** admin_shutdown, crash_shutdown, cannot_connect_now */
  adminShutdown: '57P01',
  crashShutdown: '57P02',
  cannotConnectNow: '57P03',
  /** query_canceled: statement_timeout fired, or pg_cancel_backend() */
  queryCanceled: '57014',
  /** object_not_in_prerequisite_state: e.g. pg_stat_statements created but not in shared_preload_libraries */
  objectNotInPrerequisiteState: '55000',
} as const;

/** Redis error reply prefixes the code reacts to. */
export const REDIS_REPLY = {
  /** XGROUP CREATE on a group that exists */
  busyGroup: 'BUSYGROUP',
  /** XREADGROUP/XAUTOCLAIM on a stream or group that does not exist (e.g. after FLUSHDB) */
  noGroup: 'NOGROUP',
  /** XINFO GROUPS/CONSUMERS on a stream that does not exist */
  noSuchKey: 'ERR no such key',
} as const;
