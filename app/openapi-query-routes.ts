import { STATS_AGGREGATES, STATS_GROUP_BY, STATS_RESOLUTIONS } from '../lib/stats-query.js';
import { COLUMNS_TYPE } from '../lib/stats-render.js';
import type { OpenApiObject, RouteDoc } from './openapi.js';
import { MAX_PAGE } from './routes/event-reads.js';

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const query = (name: string, description: string, schema: OpenApiObject) => ({ name, in: 'query', description, schema });
const TYPE_FILTER = query('type', 'One event type (`order.paid`), or every type with a prefix (`order.*`; `_` is no wildcard).', {
  type: 'string',
  pattern: '^[A-Za-z0-9_.:-]{0,128}\\*?$',
});
const DURATION = { type: 'string', pattern: '^[1-9][0-9]{0,5}[mhd]$' };

const STORED_EVENT: OpenApiObject = {
  type: 'object',
  required: ['id', 'type', 'timestamp', 'received_at', 'source', 'idempotency_key', 'priority', 'value', 'data'],
  properties: {
    id: { type: 'string', format: 'uuid' },
    type: { type: 'string' },
    timestamp: { type: 'string', format: 'date-time', description: 'When it occurred.' },
    received_at: { type: 'string', format: 'date-time' },
    source: { type: ['string', 'null'] },
    idempotency_key: { type: ['string', 'null'] },
    priority: { type: 'string', enum: ['critical', 'normal', 'low'] },
    value: { type: ['number', 'null'] },
    data: { type: ['object', 'null'] },
  },
};

const POINT: OpenApiObject = {
  type: 'object',
  required: ['t'],
  description: 'One bucket: the aggregates asked for; count 0, sum 0 and null avg, min and max when nothing happened.',
  properties: {
    t: { type: 'string', format: 'date-time', description: 'Start of the bucket.' },
    count: { type: 'integer' },
    sum: { type: 'number' },
    avg: { type: ['number', 'null'] },
    min: { type: ['number', 'null'] },
    max: { type: ['number', 'null'] },
  },
};

const STATS: OpenApiObject = {
  type: 'object',
  required: ['window', 'step', 'resolution', 'from', 'to', 'newest_minute', 'group_by', 'aggregates', 'series'],
  properties: {
    window: { type: 'string' },
    step: { type: 'string' },
    resolution: {
      type: 'string',
      enum: [...STATS_RESOLUTIONS],
      description: 'The rollup that answered: the coarsest whose buckets tile the step (minute, 5 minutes, hour, day).',
    },
    from: { type: 'string', format: 'date-time', description: 'Start of the first bucket (inclusive).' },
    to: { type: 'string', format: 'date-time', description: 'End of the last bucket (exclusive).' },
    newest_minute: {
      type: ['string', 'null'],
      format: 'date-time',
      description: 'Newest minute holding a committed event of the tenant, read with the numbers.',
    },
    group_by: { type: ['string', 'null'], enum: [...STATS_GROUP_BY, null] },
    aggregates: { type: 'array', items: { type: 'string', enum: [...STATS_AGGREGATES] } },
    series: {
      type: 'array',
      description: 'One series per group holding events (one series without group_by), each with every bucket of [from, to).',
      items: {
        type: 'object',
        required: ['points'],
        properties: { type: { type: 'string', description: 'With group_by=type.' }, points: { type: 'array', items: ref('StatsPoint') } },
      },
    },
  },
};

/** The query API's routes (docs/analytics.md), one entry each, as routeDocs() lists them. */
export function queryRouteDocs(): RouteDoc[] {
  return [
    {
      method: 'get',
      path: '/v1/stats',
      operationId: 'getStats',
      summary: "Counts and value aggregates of the key's tenant per step over a window, from the rollups",
      description:
        'The coarsest rollup whose buckets tile the step answers (minute, 5 minutes, hour or day), over step-aligned buckets from the one holding now - window ' +
        'to the one holding now. More than STATS_MAX_BUCKETS buckets: 400 too_many_buckets; more than STATS_MAX_POINTS points (series × buckets): ' +
        `422 too_many_points. With \`Accept: ${COLUMNS_TYPE}\` each series holds one array per aggregate ` +
        'instead of points (bucket i starts at from + i × step), about a tenth of the bytes; gzipped when the request accepts gzip.',
      scope: 'read',
      parameters: [
        query('window', 'How far back from now: whole minutes, hours or days, from 1m to RETENTION_DAYS. Default 24h.', DURATION),
        query(
          'step',
          'Bucket width, whole minutes, hours or days, at most the window. Default: the finest of 1m, 5m, 15m, 1h, 6h, 1d giving at most 300 buckets.',
          DURATION,
        ),
        TYPE_FILTER,
        query('group_by', 'One series per event type.', { type: 'string', enum: [...STATS_GROUP_BY] }),
        query('agg', 'Comma-separated aggregates (over `value` but count). Default count.', {
          type: 'string',
          example: STATS_AGGREGATES.join(','),
        }),
      ],
      success: { '200': { description: 'Every bucket of every series', schema: ref('Stats') } },
      errors: ['invalid_parameter', 'too_many_buckets', 'too_many_points', 'query_timeout'],
      schemas: { Stats: STATS, StatsPoint: POINT },
    },
    {
      method: 'get',
      path: '/v1/events',
      operationId: 'listEvents',
      summary: "The key's tenant's stored events in pages, newest first by default",
      description:
        'Keyset pagination over (occurred_at, id): pass next_cursor as cursor for the next page; events sharing a timestamp are neither skipped nor repeated.',
      scope: 'read',
      parameters: [
        TYPE_FILTER,
        query('source', 'Exact source.', { type: 'string', minLength: 1, maxLength: 255 }),
        query('idempotency_key', 'Exact idempotency key.', { type: 'string', minLength: 1, maxLength: 255 }),
        query('since', 'Occurred at or after (RFC 3339). Default: the retention.', { type: 'string', format: 'date-time' }),
        query('until', 'Occurred before (RFC 3339). Default: a day ahead.', { type: 'string', format: 'date-time' }),
        query('limit', 'Page size.', { type: 'integer', minimum: 1, maximum: MAX_PAGE, default: 100 }),
        query('order', 'By (occurred_at, id).', { type: 'string', enum: ['desc', 'asc'], default: 'desc' }),
        query('cursor', 'next_cursor of the previous page.', { type: 'string' }),
      ],
      success: {
        '200': {
          description: 'One page',
          schema: {
            type: 'object',
            required: ['events', 'next_cursor'],
            properties: {
              events: { type: 'array', items: ref('StoredEvent') },
              next_cursor: { type: ['string', 'null'], description: 'Null on the last page.' },
            },
          },
        },
      },
      errors: ['invalid_parameter', 'invalid_cursor', 'query_timeout'],
      schemas: { StoredEvent: STORED_EVENT },
    },
    {
      method: 'get',
      path: '/v1/events/{id}',
      operationId: 'getEvent',
      summary: "One stored event of the key's tenant",
      scope: 'read',
      parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string', format: 'uuid' } }],
      success: { '200': { description: 'The event', schema: ref('StoredEvent') } },
      errors: ['invalid_parameter', 'not_found', 'event_not_found', 'query_timeout'],
      schemas: { StoredEvent: STORED_EVENT },
    },
  ];
}
