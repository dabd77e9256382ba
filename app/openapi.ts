import { ERROR_CATALOGUE } from '../lib/errors.js';
import { EVENT_SCHEMA } from '../lib/event-schema.js';
import type { Config } from '../lib/config.js';
import { QUERY_ERROR_CODES, QUERY_SCHEMAS, queryPaths } from './openapi-reads.js';

const errorResponse = (description: string) => ({
  description,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
});

/** The OpenAPI 3.1 document served at /openapi.json; its Event schema is the one the API validates with. */
export function openApiDocument(config: Pick<Config, 'maxBatchEvents' | 'retentionDays' | 'statsMaxBuckets' | 'statsMaxPoints'>): Record<string, unknown> {
  const { $id: _id, ...event } = EVENT_SCHEMA;
  const reads = queryPaths(config);
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
        ...QUERY_SCHEMAS,
        Batch: {
          type: 'object',
          additionalProperties: false,
          required: ['events'],
          properties: { events: { type: 'array', minItems: 1, maxItems: config.maxBatchEvents, items: { $ref: '#/components/schemas/Event' } } },
        },
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
            { name: 'Idempotency-Key', in: 'header', schema: { type: 'string', maxLength: 255 }, description: 'For a single event.' },
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
            '202': { description: 'Accepted and durable in the queue', content: { 'application/json': { schema: { $ref: '#/components/schemas/Accepted' } } } },
            ...Object.fromEntries(
              Object.entries(ERROR_CATALOGUE)
                .filter(([code]) => code !== 'not_ready' && !(QUERY_ERROR_CODES as readonly string[]).includes(code))
                .map(([code, e]) => [String(e.status), errorResponse(code)]),
            ),
          },
        },
        ...reads['/v1/events'],
      },
      '/v1/events/{id}': reads['/v1/events/{id}'],
      '/v1/stats': reads['/v1/stats'],
      '/healthz': { get: { summary: 'Liveness', security: [], responses: { '200': { description: 'alive' } } } },
      '/readyz': {
        get: { summary: 'Readiness: Postgres, Redis, migrations', security: [], responses: { '200': { description: 'ready' }, '503': errorResponse('not_ready') } },
      },
    },
  };
}
