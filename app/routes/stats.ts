import type { Middleware } from 'koa';
import type { Config } from '../../lib/config.js';
import type { Pool } from '../../lib/db.js';
import { apiError } from '../../lib/errors.js';
import type { AuthenticatedState } from '../state.js';
import {
  STATS_AGGREGATES,
  answerGroups,
  checkPoints,
  planStats,
  readStats,
  type StatsAggregate,
  type StatsRequest,
} from '../../lib/stats-query.js';
import { COLUMNS_TYPE, createBaseView, renderStats } from '../../lib/stats-render.js';
import { createAnswer, type StatsAnswer } from '../stats-answer.js';
import { createBaseCache } from '../stats-bases.js';
import { createFlights } from '../stats-flights.js';
import { formatDuration, invalidParameter, parseDuration, parseTypeFilter, queryParams, timedRead } from '../query-params.js';

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;
const PARAMETERS = ['window', 'step', 'type', 'group_by', 'agg'] as const;
const DEFAULT_WINDOW = '24h';
// With no step given: the finest of these (1m, 5m, 15m, 1h, 6h, 1d) that keeps the answer within
// DEFAULT_STEP_BUCKETS buckets.
const STEP_LADDER = [1, 5, 15, 60, 360, 1440].map((minutes) => minutes * MINUTE_MS);
const DEFAULT_STEP_BUCKETS = 300;

/** What the stats route reads and how much it may answer. */
export type StatsConfig = Pick<
  Config,
  'retentionDays' | 'statsMaxBuckets' | 'statsMaxPoints' | 'queryTimeoutMs' | 'statsCacheMs' | 'statsIncremental'
>;

/** Most base parts an API process keeps (tenants × questions × ranges asked lately); each holds one answer's cells. */
const MAX_BASES = 128;

function parseAggregates(text: string | undefined): StatsAggregate[] {
  if (text === undefined) return ['count'];
  const aggregates = text.split(',');
  for (const agg of aggregates) {
    if (!(STATS_AGGREGATES as readonly string[]).includes(agg)) {
      throw invalidParameter('agg', `expected a comma-separated list of ${STATS_AGGREGATES.join(', ')}, got "${agg.slice(0, 40)}"`);
    }
  }
  if (new Set(aggregates).size !== aggregates.length) throw invalidParameter('agg', 'names an aggregate twice');
  return aggregates as StatsAggregate[];
}

function parseGroupBy(text: string | undefined): 'type' | null {
  if (text === undefined) return null;
  if (text === 'type') return 'type';
  if (text === 'source')
    throw invalidParameter('group_by', 'source is not a rollup dimension (filter raw events by source with GET /v1/events)');
  throw invalidParameter('group_by', `expected type, got "${text.slice(0, 40)}"`);
}

/** Validates the query string into a stats request; every problem is a 400 naming its parameter. */
export function parseStatsRequest(tenant: string, query: Map<string, string>, config: StatsConfig): StatsRequest {
  const windowMs = parseDuration('window', query.get('window') ?? DEFAULT_WINDOW);
  if (windowMs > config.retentionDays * DAY_MS) throw invalidParameter('window', `at most the retention, ${config.retentionDays}d`);
  const step = query.get('step');
  const stepMs = step !== undefined ? parseDuration('step', step) : defaultStep(windowMs);
  if (stepMs > windowMs) throw invalidParameter('step', `must not exceed the window (${formatDuration(windowMs)})`);
  const type = query.get('type');
  return {
    tenant,
    windowMs,
    stepMs,
    type: type === undefined ? null : parseTypeFilter(type),
    groupBy: parseGroupBy(query.get('group_by')),
    aggregates: parseAggregates(query.get('agg')),
  };
}

function defaultStep(windowMs: number): number {
  return Math.min(windowMs, STEP_LADDER.find((ms) => windowMs / ms <= DEFAULT_STEP_BUCKETS) ?? DAY_MS);
}

/**
 * The key of a question for sharing reads: the tenant and every parameter that shapes the answer, normalised (a
 * window of 24h and of 1d, or agg listed in another order, are different answers only where the output differs).
 */
export function statsKey(request: StatsRequest): string {
  return JSON.stringify([request.tenant, request.windowMs, request.stepMs, request.type, request.groupBy, request.aggregates]);
}

function tooManyBuckets(buckets: number, maxBuckets: number) {
  return apiError('too_many_buckets', `window / step gives ${buckets} buckets, more than ${maxBuckets}: take a coarser step`, {
    buckets,
    max_buckets: maxBuckets,
  });
}

/**
 * GET /v1/stats: counts and value aggregates of the key's tenant over a window, per step, from the coarsest
 * rollup that answers exactly. Every bucket of the range is present (zero count when nothing happened); the
 * answer names the newest minute holding a committed event, read in the same snapshot as the numbers.
 * Identical questions of one tenant asked at once share one read and one rendering (app/stats-flights.ts); each
 * read returns the rolled-up past only when the one kept for the question no longer holds (app/stats-bases.ts),
 * and the minutes past it always. The body is JSON, or the `columns` encoding when the client accepts
 * COLUMNS_TYPE, gzipped when it accepts gzip.
 */
export function statsRoute(deps: { config: StatsConfig; pool: Pool }): Middleware<AuthenticatedState> {
  const { config, pool } = deps;
  const flights = createFlights<StatsAnswer>({ reuseMs: config.statsCacheMs });
  const bases = createBaseCache(MAX_BASES);
  const answer = async (request: StatsRequest): Promise<StatsAnswer> => {
    const now = Date.now();
    const plan = planStats(request, now);
    if (plan.buckets > config.statsMaxBuckets) throw tooManyBuckets(plan.buckets, config.statsMaxBuckets);
    const key = `${statsKey(request)}@${plan.from}-${plan.to}`;
    const kept = config.statsIncremental ? bases.get(key) : undefined;
    const read = await timedRead(
      () =>
        readStats(pool, request, plan, { now, retentionDays: config.retentionDays, maxPoints: config.statsMaxPoints }, kept?.token ?? null),
      config.queryTimeoutMs,
    );
    const entry = read.base ? { token: read.token, view: createBaseView(request, plan, read.base) } : kept;
    // The database skips the base only when the token passed still holds, and one was passed only with a view.
    if (!entry) throw new Error('stats read returned no base part and none is kept');
    if (read.base && config.statsIncremental) bases.set(key, entry);
    // Nothing committed since the last answer on this base (same live rows, same newest minute): the same answer.
    if (entry.last?.liveText === read.liveText) return entry.last.answer;
    const base = entry.view;
    checkPoints(plan, request.groupBy ? answerGroups(request, base.part, read.live).length : 1, config.statsMaxPoints);
    const header = { window: formatDuration(request.windowMs), step: formatDuration(request.stepMs), newestMinute: read.newestMinute };
    const rendered = createAnswer((format) => renderStats(request, plan, base, read.live, header, format));
    entry.last = { liveText: read.liveText, answer: rendered };
    return rendered;
  };
  return async (ctx) => {
    const { grant } = ctx.state;
    const request = parseStatsRequest(grant.tenant, queryParams(ctx.query, PARAMETERS), config);
    // Decided before any read, and before joining one.
    const buckets = planStats(request, Date.now()).buckets;
    if (buckets > config.statsMaxBuckets) throw tooManyBuckets(buckets, config.statsMaxBuckets);
    const shared = await flights.get(statsKey(request), () => answer(request));
    const format = ctx.accepts('application/json', COLUMNS_TYPE) === COLUMNS_TYPE ? 'columns' : 'json';
    const { body, gzipped } = await shared.body(format, ctx.acceptsEncodings('gzip', 'identity') === 'gzip');
    ctx.vary('Accept');
    ctx.vary('Accept-Encoding');
    ctx.type = format === 'columns' ? COLUMNS_TYPE : 'application/json';
    if (gzipped) ctx.set('Content-Encoding', 'gzip');
    ctx.body = body;
  };
}
