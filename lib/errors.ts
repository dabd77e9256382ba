/**
 * The catalogue of errors a client can see. Each code is stable: clients branch on it, docs/api.md documents
 * it (a test keeps the two in step), and the message is safe to show.
 */
export const ERROR_CATALOGUE = {
  malformed_json: { status: 400, description: 'The body is not valid UTF-8 JSON.' },
  invalid_body: { status: 400, description: 'The JSON is neither an event object nor `{"events": [...]}`.' },
  invalid_header: { status: 400, description: 'A header has an invalid value (`X-Priority`, `Idempotency-Key`, `Last-Event-ID`).' },
  invalid_parameter: {
    status: 400,
    description:
      "A query parameter is unknown, repeated, malformed or out of range (the query API's, where `details.parameter` names it, or the live view's `type` filters or `last_event_id`).",
  },
  invalid_cursor: {
    status: 400,
    description: 'The `cursor` of `GET /v1/events` is not one the API returned (or asks for the other order).',
  },
  too_many_buckets: {
    status: 400,
    description: '`window` / `step` of `GET /v1/stats` gives more buckets than `STATS_MAX_BUCKETS`; take a coarser step.',
  },
  idempotency_key_on_batch: {
    status: 400,
    description: 'The `Idempotency-Key` header was sent with a batch; each event of a batch carries its own `idempotency_key`.',
  },
  ambiguous_credentials: { status: 400, description: 'Both `Authorization` and `X-Api-Key` are sent and they do not name the same key.' },
  unauthorized: { status: 401, description: 'The API key is missing, unknown, revoked or expired.' },
  forbidden: { status: 403, description: 'The API key lacks the scope this endpoint needs (`ingest`, `read` or `admin`).' },
  priority_not_allowed: {
    status: 403,
    description: "`X-Priority` names a class above the key's ceiling (`keys create --max-priority`); nothing was accepted.",
  },
  not_found: { status: 404, description: 'No such route.' },
  event_not_found: { status: 404, description: "No event with this id for the key's tenant (or it is past retention)." },
  method_not_allowed: { status: 405, description: 'The route exists but not with this method (see `Allow`).' },
  body_timeout: {
    status: 408,
    description: 'The body did not arrive within `BODY_TIMEOUT_MS`; the connection is closed. Nothing was accepted.',
  },
  payload_too_large: { status: 413, description: 'The body exceeds `MAX_BODY_BYTES`, or `MAX_DECOMPRESSED_BYTES` once decompressed.' },
  batch_too_large: { status: 413, description: 'The batch holds more than `MAX_BATCH_EVENTS` events.' },
  unsupported_media_type: {
    status: 415,
    description: 'The `Content-Type` is not `application/json`, or it names a charset other than UTF-8.',
  },
  unsupported_encoding: { status: 415, description: 'The `Content-Encoding` is not `gzip` or `identity`, or the gzip stream is corrupt.' },
  invalid_event: { status: 422, description: 'Every event of the request failed validation; `details` lists why, per event.' },
  empty_batch: { status: 422, description: 'The batch holds no events.' },
  too_many_points: {
    status: 422,
    description:
      'The stats answer would hold more than `STATS_MAX_POINTS` points (buckets × groups); narrow the type filter, drop `group_by` or take a coarser step.',
  },
  rate_limited: {
    status: 429,
    description: 'The API key exceeded its rate limit (token bucket); retry after `Retry-After` seconds, when a token is available.',
  },
  too_many_auth_failures: {
    status: 429,
    description:
      'Too many failed authentications from this client address (`AUTH_FAILURE_BURST`); refused without looking the key up. Retry after `Retry-After` seconds.',
  },
  quota_exceeded: {
    status: 429,
    description:
      "The tenant's quota of accepted events (per second or per UTC day, `floodgate tenants set-quota`) is spent; nothing of the request was accepted. Retry after `Retry-After` seconds.",
  },
  too_many_in_flight: {
    status: 429,
    description:
      'The API key already has `MAX_IN_FLIGHT_PER_KEY` requests open in this process (waiting for their body included); retry after `Retry-After` seconds.',
  },
  too_many_connections: {
    status: 429,
    description:
      'The API key already holds `MAX_CONNECTIONS_PER_KEY` connections to this process; this connection is closed. Reuse the open ones.',
  },
  overloaded: {
    status: 503,
    description:
      'Shed by the load shedder (the controller, an open class gate or a hard limit) to protect higher-priority traffic; retry after `Retry-After` seconds.',
  },
  dependency_unavailable: {
    status: 503,
    description:
      'Redis could not take the write or its breaker is open, and the request is not critical (critical events then go to Postgres: 201); or neither could take it. Nothing was accepted; retry after `Retry-After` seconds.',
  },
  not_ready: {
    status: 503,
    description:
      'From `/readyz`: a dependency is unreachable or too slow, or migrations are not applied; `details` names each check (`ok`, `unreachable`, `timeout`, `pending`, `unknown`).',
  },
  query_timeout: {
    status: 503,
    description: 'A query ran longer than `QUERY_TIMEOUT_MS` and was cancelled; narrow the window or the filters.',
  },
  internal_error: { status: 500, description: 'An unexpected failure; nothing internal is exposed. The request id finds it in the logs.' },
} as const satisfies Record<string, { status: number; description: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** What an error answer carries: thrown through Koa as an ApiError, or rendered before Koa by the early refusal. */
export interface ErrorAnswer {
  readonly code: ErrorCode;
  /** Shown to the client. */
  readonly message: string;
  readonly details?: unknown;
  /** Response headers that come with it (`Retry-After`, `Allow`, `WWW-Authenticate`…). */
  readonly headers?: Readonly<Record<string, string>>;
}

/** The JSON body of every error answer. */
export interface ErrorBody {
  error: ErrorCode;
  message: string;
  request_id: string;
  details?: unknown;
}

/** The Content-Type of every error answer. */
export const ERROR_CONTENT_TYPE = 'application/json; charset=utf-8';

/** Serialises an error answer's body: the one rendering for the Koa error middleware and the early refusal alike. */
export function errorBody(answer: ErrorAnswer, requestId: string): string {
  const body: ErrorBody = { error: answer.code, message: answer.message, request_id: requestId };
  if (answer.details !== undefined) body.details = answer.details;
  return JSON.stringify(body);
}

/** An error the API answers with its catalogue status and code; `message` is shown to the client. */
export class ApiError extends Error implements ErrorAnswer {
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
  /** EVALSHA of a script the server does not hold (restarted, or SCRIPT FLUSH): send it with EVAL */
  noScript: 'NOSCRIPT',
  /** Redis Cluster: the key's slot is served by another node now (the command did not run) */
  moved: 'MOVED ',
  /** Redis Cluster: the key's slot is being migrated and the key is on the target already (the command did not run) */
  ask: 'ASK ',
  /** Redis Cluster: a multi-key command met its slot half-migrated, some keys moved and some not (it did not run) */
  tryAgain: 'TRYAGAIN',
  /** Redis Cluster: the cluster is not serving the slot right now, e.g. mid-failover (the command did not run) */
  clusterDown: 'CLUSTERDOWN',
} as const;
