import type { Scope } from '../lib/api-keys.js';
import type { Config } from '../lib/config.js';
import { ERROR_CATALOGUE, type ErrorCode } from '../lib/errors.js';
import { EVENT_SCHEMA } from '../lib/event-schema.js';
import { routeDocs } from './openapi-routes.js';

/** A JSON Schema or any other piece of the document, as OpenAPI 3.1 spells it. */
export type OpenApiObject = Record<string, unknown>;

/** What a successful answer of a route looks like. */
export interface SuccessDoc {
  readonly description: string;
  /** Body schema (usually a `$ref`), under `mediaType` (default application/json). Omitted: no body documented. */
  readonly schema?: OpenApiObject;
  readonly mediaType?: string;
}

/**
 * Everything the document says about one route: add one of these to routeDocs() (app/openapi-routes.ts) with the
 * route. Responses for errors are built from `errors` and the catalogue, so a route lists codes, never statuses.
 */
export interface RouteDoc {
  readonly method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  /** OpenAPI path, with `{param}` where the router has `:param`. */
  readonly path: string;
  readonly operationId: string;
  readonly summary: string;
  readonly description?: string;
  /** The key scope the route needs; null for a public route. Authenticated routes also get 401, 403 and 503. */
  readonly scope: Scope | null;
  readonly parameters?: readonly OpenApiObject[];
  readonly requestBody?: OpenApiObject;
  /** Successful answers by HTTP status. */
  readonly success: Readonly<Record<string, SuccessDoc>>;
  /** Every error code the route itself can answer (beyond the ones every route or every authenticated route has). */
  readonly errors: readonly ErrorCode[];
  /** Component schemas the route's entries refer to, added under components.schemas. */
  readonly schemas?: Readonly<Record<string, OpenApiObject>>;
  /** Codes that carry Retry-After on this route beyond RETRY_AFTER_CODES (e.g. not_ready while shutting down). */
  readonly retryAfter?: readonly ErrorCode[];
  /** The configuration under which the route is served at all, e.g. `LIVE_ENABLED=true`; said in the description. */
  readonly servedWhen?: string;
}

/** Codes whose answers carry Retry-After: the client should wait that many seconds before trying again. */
export const RETRY_AFTER_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'rate_limited',
  'too_many_auth_failures',
  'quota_exceeded',
  'too_many_in_flight',
  'too_many_connections',
  'overloaded',
  'dependency_unavailable',
]);

/** Answered by any route: an unexpected failure. */
const EVERY_ROUTE: readonly ErrorCode[] = ['internal_error'];
/**
 * Answered by any route that needs a key: two different keys, missing or unknown key, wrong scope, too many failed
 * attempts from the address, key store unreachable.
 */
const AUTHENTICATED: readonly ErrorCode[] = [
  'ambiguous_credentials',
  'unauthorized',
  'forbidden',
  'too_many_auth_failures',
  'dependency_unavailable',
];
/** Answered for requests no route matches, documented once under components.responses. */
const UNROUTED: Readonly<Record<string, ErrorCode>> = { NotFound: 'not_found', MethodNotAllowed: 'method_not_allowed' };

const ERROR_SCHEMA = '#/components/schemas/Error';

/** The codes a route answers, in catalogue order, each once. */
function routeErrors(route: RouteDoc): ErrorCode[] {
  const codes = new Set<ErrorCode>([...route.errors, ...(route.scope === null ? [] : AUTHENTICATED), ...EVERY_ROUTE]);
  return (Object.keys(ERROR_CATALOGUE) as ErrorCode[]).filter((code) => codes.has(code));
}

/** One error response covering every code that shares its status: the codes listed, enumerated and exemplified. */
function errorResponse(codes: readonly ErrorCode[], alsoRetryAfter: readonly ErrorCode[] = []): OpenApiObject {
  const headers: OpenApiObject = { 'X-Request-Id': { $ref: '#/components/headers/X-Request-Id' } };
  const retrying = codes.filter((code) => RETRY_AFTER_CODES.has(code) || alsoRetryAfter.includes(code));
  if (retrying.length > 0) {
    headers['Retry-After'] = {
      $ref: '#/components/headers/Retry-After',
      ...(retrying.length < codes.length ? { description: `Sent with ${retrying.join(', ')}.` } : {}),
    };
  }
  return {
    description: codes.map((code) => `\`${code}\`: ${ERROR_CATALOGUE[code].description}`).join('\n\n'),
    headers,
    content: {
      'application/json': {
        schema: { allOf: [{ $ref: ERROR_SCHEMA }, { type: 'object', properties: { error: { enum: [...codes] } } }] },
        examples: Object.fromEntries(
          codes.map((code) => [
            code,
            {
              summary: ERROR_CATALOGUE[code].description,
              value: { error: code, message: ERROR_CATALOGUE[code].description, request_id: 'c0ffee00-0000-4000-8000-000000000000' },
            },
          ]),
        ),
      },
    },
  };
}

/** The OpenAPI operation of one route: success answers, then one response per error status. */
function operation(route: RouteDoc): OpenApiObject {
  const responses: OpenApiObject = {};
  for (const [status, success] of Object.entries(route.success)) {
    responses[status] = {
      description: success.description,
      headers: { 'X-Request-Id': { $ref: '#/components/headers/X-Request-Id' } },
      ...(success.schema ? { content: { [success.mediaType ?? 'application/json']: { schema: success.schema } } } : {}),
    };
  }
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of routeErrors(route)) {
    const status = ERROR_CATALOGUE[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  for (const [status, codes] of [...byStatus].sort(([a], [b]) => a - b)) responses[String(status)] = errorResponse(codes, route.retryAfter);
  const description = [route.description, route.servedWhen && `Served only with ${route.servedWhen}.`].filter(Boolean).join(' ');
  return {
    operationId: route.operationId,
    summary: route.summary,
    ...(description ? { description } : {}),
    ...(route.servedWhen ? { 'x-served-when': route.servedWhen } : {}),
    ...(route.scope === null ? { security: [] } : { 'x-required-scope': route.scope }),
    ...(route.parameters ? { parameters: route.parameters } : {}),
    ...(route.requestBody ? { requestBody: route.requestBody } : {}),
    responses,
  };
}

/** The OpenAPI 3.1 document served at /openapi.json; its Event schema is the one the API validates with. */
export function openApiDocument(config: Pick<Config, 'maxBatchEvents'>): OpenApiObject {
  const { $id: _id, ...event } = EVENT_SCHEMA;
  const routes = routeDocs(config);
  const paths: Record<string, OpenApiObject> = {};
  for (const route of routes) paths[route.path] = { ...paths[route.path], [route.method]: operation(route) };
  return {
    openapi: '3.1.0',
    info: {
      title: 'Floodgate API',
      version: '1',
      description:
        'Event ingest with load shedding. Every answer carries X-Request-Id; every error body is `{error, message, request_id, details?}` ' +
        'with a stable `error` code (listed per status on each operation). Requests no route matches get 404 `not_found`, or 405 ' +
        '`method_not_allowed` with `Allow` when the path exists.',
    },
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'An API key: `Authorization: Bearer <key>`.' },
        apiKey: { type: 'apiKey', in: 'header', name: 'X-Api-Key', description: 'The same key in X-Api-Key.' },
      },
      headers: {
        'X-Request-Id': {
          description:
            "The request id: the client's X-Request-Id when it is 1-128 characters of A-Z a-z 0-9 . _ : -, otherwise a new UUID. Also in error bodies and in the logs.",
          schema: { type: 'string' },
        },
        'Retry-After': { description: 'Seconds to wait before retrying.', schema: { type: 'integer', minimum: 1 } },
      },
      responses: Object.fromEntries(Object.entries(UNROUTED).map(([name, code]) => [name, errorResponse([code])])),
      schemas: {
        Event: event,
        Error: {
          type: 'object',
          required: ['error', 'message', 'request_id'],
          properties: {
            error: { type: 'string', enum: Object.keys(ERROR_CATALOGUE), description: 'Stable code; branch on this, not on the message.' },
            message: { type: 'string', description: 'Human-readable; safe to show.' },
            request_id: { type: 'string' },
            details: { description: 'Code-specific, e.g. the rejected events of invalid_event.' },
          },
        },
        ...Object.fromEntries(routes.flatMap((r) => Object.entries(r.schemas ?? {}))),
      },
    },
    security: [{ bearer: [] }, { apiKey: [] }],
    paths,
  };
}
