import type { Config } from '../lib/config.js';
import { batchSchema, PRIORITIES } from '../lib/event-schema.js';
import type { RouteDoc } from './openapi.js';
import { queryRouteDocs } from './openapi-query-routes.js';

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

/**
 * The documentation of every route, one entry per route (app/openapi.ts turns them into the OpenAPI document).
 * test/openapi.test.ts fails when the router has a route without an entry here, or the other way round.
 */
export function routeDocs(config: Pick<Config, 'maxBatchEvents'>): RouteDoc[] {
  return [
    {
      method: 'post',
      path: '/v1/events',
      operationId: 'ingestEvents',
      summary: 'Send one event or a batch',
      description:
        'Valid events are accepted (their ids answered in order) even when others of the batch are invalid; those are listed in `rejected`. ' +
        '202: durable in the queue. 201: critical events written straight to PostgreSQL because Redis could not take them.',
      scope: 'ingest',
      parameters: [
        {
          name: 'X-Priority',
          in: 'header',
          schema: { type: 'string', enum: [...PRIORITIES] },
          description: "The request's class; default: the key's.",
        },
        {
          name: 'Idempotency-Key',
          in: 'header',
          schema: { type: 'string', maxLength: 255 },
          description:
            'The idempotency key of a single event; refused on a batch (400 idempotency_key_on_batch), whose events carry their own.',
        },
        { name: 'Content-Encoding', in: 'header', schema: { type: 'string', enum: ['gzip', 'identity'] } },
      ],
      requestBody: {
        required: true,
        content: { 'application/json': { schema: { oneOf: [ref('Event'), ref('Batch')] } } },
      },
      success: {
        '201': {
          description: 'Critical events stored directly in PostgreSQL because Redis could not take them (same body)',
          schema: ref('Accepted'),
        },
        '202': {
          description: 'Accepted and durable in the queue; a repeated idempotency key is answered with the id answered first',
          schema: ref('Accepted'),
        },
      },
      errors: [
        'malformed_json',
        'invalid_body',
        'invalid_header',
        'idempotency_key_on_batch',
        'priority_not_allowed',
        'body_timeout',
        'payload_too_large',
        'batch_too_large',
        'unsupported_media_type',
        'unsupported_encoding',
        'invalid_event',
        'empty_batch',
        'rate_limited',
        'quota_exceeded',
        'too_many_in_flight',
        'too_many_connections',
        'overloaded',
        'dependency_unavailable',
      ],
      schemas: {
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
                  errors: {
                    type: 'array',
                    items: { type: 'object', properties: { path: { type: 'string' }, message: { type: 'string' } } },
                  },
                },
              },
            },
          },
        },
      },
    },
    {
      method: 'get',
      path: '/v1/events/live',
      operationId: 'liveEvents',
      summary: "The tenant's events as they become durable: Server-Sent Events, or a WebSocket on upgrade (see docs/live.md)",
      scope: 'read',
      servedWhen: 'LIVE_ENABLED=true',
      parameters: [
        {
          name: 'type',
          in: 'query',
          schema: { type: 'array', items: { type: 'string' } },
          style: 'form',
          explode: true,
          description: 'Event types to keep: exact (`order.created`) or a prefix ending in `*` (`order.*`); repeated or comma-separated.',
        },
        {
          name: 'Last-Event-ID',
          in: 'header',
          schema: { type: 'string' },
          description: 'Resume after this id (the SSE `id:` of the last event seen).',
        },
        { name: 'last_event_id', in: 'query', schema: { type: 'string' }, description: 'The same, for WebSocket clients.' },
      ],
      success: {
        '101': { description: 'WebSocket: one text message per delivered batch, `{"kind":"events","events":[{"id","event"}]}`' },
        '200': {
          description: 'An event stream: `id:` and `data:` per event; `event: gap` and `event: close` as notices',
          mediaType: 'text/event-stream',
          schema: { type: 'string' },
        },
      },
      errors: ['invalid_header', 'invalid_parameter', 'overloaded', 'dependency_unavailable', 'not_ready'],
      retryAfter: ['not_ready'],
    },
    ...queryRouteDocs(),
    {
      method: 'get',
      path: '/v1/admin/load',
      operationId: 'getLoad',
      summary: "This API process's load shedder: mode, controller state, signals, targets and breakers",
      scope: 'admin',
      success: { '200': { description: 'The shedder snapshot', schema: ref('LoadSnapshot') } },
      errors: [],
      schemas: {
        LoadSnapshot: {
          type: 'object',
          required: ['mode'],
          properties: {
            mode: { type: 'string', enum: ['off', 'shadow', 'enforce'] },
            controller: {
              type: 'object',
              description:
                "Shed level (0-2), pressure (1 = at target), each class's pressure against its own target, backlog floor, normal hold-off and shed probability per class.",
              properties: {
                level: { type: 'number' },
                pressure: { type: 'number' },
                classPressure: { type: 'object', additionalProperties: { type: 'number' } },
                backlogFloor: { type: 'number' },
                normalHeldOffSeconds: { type: 'number' },
                shedProbability: { type: 'object', additionalProperties: { type: 'number' } },
              },
            },
            signals: {
              type: 'object',
              additionalProperties: { type: 'number' },
              description:
                "p99Ms, samples, eventLoopDelayP99Ms, loopUtilization (event-loop utilisation over the latency window, 0–1), backlogEntries, inFlight, and each class's own window (classes).",
              properties: {
                classes: {
                  type: 'object',
                  description: "Per class: p99Ms and samples of its admitted requests over the controller's window.",
                  additionalProperties: {
                    type: 'object',
                    properties: { p99Ms: { type: 'number' }, samples: { type: 'number' } },
                  },
                },
              },
            },
            targets: {
              type: 'object',
              additionalProperties: { type: 'number' },
              description: "The targets and limits from the configuration, with each class's own p99 target (classP99Ms).",
              properties: { classP99Ms: { type: 'object', additionalProperties: { type: 'number' } } },
            },
            workLimit: {
              type: 'object',
              description:
                'The adaptive limit on normal and low requests in flight: whether it is on, the limit now, its ceiling, the slots held, the requests waiting per class, the queue timeout.',
              properties: {
                enabled: { type: 'boolean' },
                limit: { type: 'number' },
                maxLimit: { type: 'number' },
                inFlight: { type: 'number' },
                queued: { type: 'object', additionalProperties: { type: 'number' } },
                queueTimeoutMs: { type: 'number' },
              },
            },
            breakers: { type: 'object', additionalProperties: { type: 'string', enum: ['closed', 'open', 'half-open'] } },
            gates: { type: 'object', additionalProperties: { type: 'number' } },
          },
        },
      },
    },
    {
      method: 'get',
      path: '/healthz',
      operationId: 'getHealth',
      summary: 'Liveness: the process is serving',
      scope: null,
      success: { '200': { description: 'alive', schema: { type: 'object', properties: { status: { const: 'ok' } } } } },
      errors: [],
    },
    {
      method: 'get',
      path: '/readyz',
      operationId: 'getReadiness',
      summary: 'Readiness: PostgreSQL and Redis answer and every migration is applied',
      scope: null,
      success: {
        '200': { description: 'ready', schema: { type: 'object', properties: { status: { const: 'ready' }, checks: { type: 'object' } } } },
      },
      errors: ['not_ready'],
    },
    {
      method: 'get',
      path: '/openapi.json',
      operationId: 'getOpenApi',
      summary: 'This document',
      scope: null,
      success: { '200': { description: 'The OpenAPI 3.1 document', schema: { type: 'object' } } },
      errors: [],
    },
  ];
}
