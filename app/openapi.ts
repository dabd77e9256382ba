import { ERROR_CATALOGUE } from '../lib/errors.js';
import { batchSchema, EVENT_SCHEMA } from '../lib/event-schema.js';
import type { Config } from '../lib/config.js';

const errorResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
});

/** The OpenAPI 3.1 document served at /openapi.json; its Event schema is the one the API validates with. */
export function openApiDocument(config: Pick<Config, 'maxBatchEvents'>): Record<string, unknown> {
  const { $id: _id, ...event } = EVENT_SCHEMA;
  return {
    openapi: '3.1.0',
    info: { title: 'Floodgate ingest API', version: '1' },
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer' },
        apiKey: { type: 'apiKey', in: 'header', name: 'X-Api-Key' },
      },
      schemas: {
        Event: event,
        Batch: batchSchema(config.maxBatchEvents, '#/components/schemas/Event'),
        Accepted: {
          type: 'object',
          required: ['accepted', 'ids', 'rejected'],
          properties: {
            accepted: { type: 'integer' },
            ids: { type: 'array', items: { type: 'string', format: 'uuid' }, description: 'UUIDv7 per accepted event, in order.' },
            rejected: {
              type: 'array',
              items: {
                type: 'object',
                properties: {
                  index: { type: 'integer' },
                  errors: { type: 'array', items: { type: 'object', properties: { path: { type: 'string' }, message: { type: 'string' } } } },
                },
              },
            },
          },
        },
        Error: {
          type: 'object',
          required: ['error', 'message', 'request_id'],
          properties: {
            error: { type: 'string', enum: Object.keys(ERROR_CATALOGUE) },
            message: { type: 'string' },
            request_id: { type: 'string' },
            details: {},
          },
        },
      },
    },
    security: [{ bearer: [] }, { apiKey: [] }],
    paths: {
      '/v1/events': {
        post: {
          summary: 'Send one event or a batch',
          parameters: [
            { name: 'X-Priority', in: 'header', schema: { type: 'string', enum: ['critical', 'normal', 'low'] } },
            {
              name: 'Idempotency-Key',
              in: 'header',
              schema: { type: 'string', maxLength: 255 },
              description: 'The idempotency key of a single event; refused on a batch (400 idempotency_key_on_batch), whose events carry their own.',
            },
            { name: 'Content-Encoding', in: 'header', schema: { type: 'string', enum: ['gzip', 'identity'] } },
          ],
          requestBody: {
            required: true,
            content: {
              'application/json': {
                schema: { oneOf: [{ $ref: '#/components/schemas/Event' }, { $ref: '#/components/schemas/Batch' }] },
              },
            },
          },
          responses: {
            '201': {
              description: 'Critical events stored directly in Postgres because Redis could not take them (same body)',
              content: { 'application/json': { schema: { $ref: '#/components/schemas/Accepted' } } },
            },
            '202': { description: 'Accepted and durable in the queue; a repeated idempotency key is answered with the id answered first', content: { 'application/json': { schema: { $ref: '#/components/schemas/Accepted' } } } },
            ...Object.fromEntries(
              Object.entries(ERROR_CATALOGUE)
                .filter(([code]) => code !== 'not_ready')
                .map(([code, e]) => [String(e.status), errorResponse(code)]),
            ),
          },
        },
      },
      '/v1/events/live': {
        get: {
          summary: "The tenant's events as they become durable: Server-Sent Events, or a WebSocket on upgrade (see docs/live.md)",
          parameters: [
            { name: 'type', in: 'query', schema: { type: 'array', items: { type: 'string' } }, style: 'form', explode: true, description: 'Event types to keep: exact (`order.created`) or a prefix ending in `*` (`order.*`); repeated or comma-separated.' },
            { name: 'Last-Event-ID', in: 'header', schema: { type: 'string' }, description: 'Resume after this id (the SSE `id:` of the last event seen).' },
            { name: 'last_event_id', in: 'query', schema: { type: 'string' }, description: 'The same, for WebSocket clients.' },
          ],
          responses: {
            '101': { description: 'WebSocket: one text message per delivered batch, `{"kind":"events","events":[{"id","event"}]}`' },
            '200': { description: 'An event stream: `id:` and `data:` per event; `event: gap` and `event: close` as notices', content: { 'text/event-stream': {} } },
            ...Object.fromEntries(
              (['invalid_header', 'invalid_parameter', 'unauthorized', 'forbidden', 'overloaded'] as const).map((code) => [String(ERROR_CATALOGUE[code].status), errorResponse(code)]),
            ),
          },
        },
      },
      '/healthz': { get: { summary: 'Liveness', security: [], responses: { '200': { description: 'alive' } } } },
      '/readyz': {
        get: { summary: 'Readiness: Postgres, Redis, migrations', security: [], responses: { '200': { description: 'ready' }, '503': errorResponse('not_ready') } },
      },
    },
  };
}
