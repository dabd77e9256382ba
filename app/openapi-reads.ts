import type { Config } from '../lib/config.js';
import { ERROR_CATALOGUE, type ErrorCode } from '../lib/errors.js';
import { STATS_AGGREGATES, STATS_GROUP_BY } from '../lib/stats-query.js';
import { MAX_PAGE } from './routes/event-reads.js';

/** Error codes only the query API answers (the ingest route's document leaves them out). */
export const QUERY_ERROR_CODES: readonly ErrorCode[] = ['invalid_parameter', 'invalid_cursor', 'too_many_buckets', 'too_many_points', 'event_not_found', 'query_timeout'];

const errors = (...codes: ErrorCode[]) =>
  Object.fromEntries(
    // One entry per status: codes sharing a status are listed in its description.
    [...new Set(codes.map((c) => ERROR_CATALOGUE[c].status))].map((status) => [
      String(status),
      {
        description: codes.filter((c) => ERROR_CATALOGUE[c].status === status).join(', '),
        content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
      },
    ]),
  );

const COMMON_ERRORS: ErrorCode[] = ['invalid_parameter', 'unauthorized', 'forbidden', 'query_timeout', 'dependency_unavailable', 'internal_error'];
const query = (name: string, description: string, schema: Record<string, unknown>) => ({ name, in: 'query', description, schema });
const json = (ref: string, description: string) => ({ description, content: { 'application/json': { schema: { $ref: `#/components/schemas/${ref}` } } } });
const TYPE_FILTER = query('type', 'One event type (`order.paid`), or every type with a prefix (`order.*`).', { type: 'string', pattern: '^[A-Za-z0-9_.:-]{0,128}\\*?$' });
const DURATION = { type: 'string', pattern: '^[1-9][0-9]{0,5}[mhd]$' };

/** Schemas of the query API's answers. */
export const QUERY_SCHEMAS = {
  StoredEvent: {
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
  },
  EventPage: {
    type: 'object',
    required: ['events', 'next_cursor'],
    properties: {
      events: { type: 'array', items: { $ref: '#/components/schemas/StoredEvent' } },
      next_cursor: { type: ['string', 'null'], description: 'Pass as `cursor` for the next page; null on the last page.' },
    },
  },
  Stats: {
    type: 'object',
    required: ['window', 'step', 'resolution', 'from', 'to', 'newest_minute', 'group_by', 'aggregates', 'series'],
    properties: {
      window: { type: 'string' },
      step: { type: 'string' },
      resolution: { type: 'string', enum: ['minute', 'hour', 'day'], description: 'The rollup that answered: the coarsest whose buckets tile the step.' },
      from: { type: 'string', format: 'date-time', description: 'Start of the first bucket (inclusive).' },
      to: { type: 'string', format: 'date-time', description: 'End of the last bucket (exclusive).' },
      newest_minute: { type: ['string', 'null'], format: 'date-time', description: 'Newest minute holding a committed event of the tenant, read with the numbers.' },
      group_by: { type: ['string', 'null'], enum: [...STATS_GROUP_BY, null] },
      aggregates: { type: 'array', items: { type: 'string', enum: [...STATS_AGGREGATES] } },
      series: {
        type: 'array',
        items: {
          type: 'object',
          required: ['points'],
          properties: {
            type: { type: 'string', description: 'With group_by=type.' },
            points: {
              type: 'array',
              items: {
                type: 'object',
                required: ['t'],
                properties: {
                  t: { type: 'string', format: 'date-time' },
                  count: { type: 'integer' },
                  sum: { type: 'number' },
                  avg: { type: ['number', 'null'] },
                  min: { type: ['number', 'null'] },
                  max: { type: ['number', 'null'] },
                },
              },
            },
          },
        },
      },
    },
  },
} as const;

/** The query API's operations, by path (merged into the document next to the ingest route's). */
export function queryPaths(config: Pick<Config, 'retentionDays' | 'statsMaxBuckets' | 'statsMaxPoints'>): Record<string, Record<string, unknown>> {
  const security = [{ bearer: [] }, { apiKey: [] }];
  return {
    '/v1/stats': {
      get: {
        summary: 'Counts and value aggregates per step over a window (key scope `read`)',
        security,
        parameters: [
          query('window', `How far back from now, 1m to ${config.retentionDays}d. Default 24h.`, DURATION),
          query('step', `Bucket width (whole minutes, hours or days, at most the window); default: the finest of 1m, 5m, 15m, 1h, 6h, 1d giving at most 300 buckets. At most ${config.statsMaxBuckets} buckets.`, DURATION),
          TYPE_FILTER,
          query('group_by', 'One series per event type.', { type: 'string', enum: [...STATS_GROUP_BY] }),
          query('agg', 'Comma-separated aggregates; default count.', { type: 'string', example: 'count,sum,avg,min,max' }),
        ],
        responses: { '200': json('Stats', `Every bucket of every series (at most ${config.statsMaxPoints} points)`), ...errors(...COMMON_ERRORS, 'too_many_buckets', 'too_many_points') },
      },
    },
    '/v1/events': {
      get: {
        summary: 'List stored events, newest first, in pages (key scope `read`)',
        security,
        parameters: [
          TYPE_FILTER,
          query('source', 'Exact source.', { type: 'string', maxLength: 255 }),
          query('idempotency_key', 'Exact idempotency key.', { type: 'string', maxLength: 255 }),
          query('since', 'Occurred at or after (RFC 3339). Default: the retention.', { type: 'string', format: 'date-time' }),
          query('until', 'Occurred before (RFC 3339). Default: a day ahead.', { type: 'string', format: 'date-time' }),
          query('limit', 'Page size.', { type: 'integer', minimum: 1, maximum: MAX_PAGE, default: 100 }),
          query('order', 'By (occurred_at, id).', { type: 'string', enum: ['desc', 'asc'], default: 'desc' }),
          query('cursor', 'next_cursor of the previous page.', { type: 'string' }),
        ],
        responses: { '200': json('EventPage', 'One page'), ...errors(...COMMON_ERRORS, 'invalid_cursor') },
      },
    },
    '/v1/events/{id}': {
      get: {
        summary: 'One stored event (key scope `read`)',
        security,
        parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string', format: 'uuid' } }],
        responses: { '200': json('StoredEvent', 'The event'), ...errors(...COMMON_ERRORS, 'event_not_found') },
      },
    },
  };
}
