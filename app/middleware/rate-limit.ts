import type { Middleware } from 'koa';
import type { KeyGrant } from '../../lib/api-keys.js';
import type { Config } from '../../lib/config.js';
import { apiError } from '../../lib/errors.js';
import type { ApiMetrics } from '../metrics.js';
import { tokenRetryAfter } from '../retry-after.js';
import type { IngestState } from '../state.js';

// One bucket per key that sent a request; keys are few, but a bound keeps a pathological key churn from growing it.
const MAX_BUCKETS = 100_000;

interface Bucket {
  tokens: number;
  at: number;
  /** The limit the bucket was filled for: a changed key limit (after the auth cache expires) starts a fresh bucket. */
  readonly rate: number;
  readonly burst: number;
}

/** The limit one process enforces for a key, or null when the key is unlimited. */
export function processLimit(grant: KeyGrant, config: Config): { rate: number; burst: number } | null {
  const perSecond = grant.rateLimit.perSecond ?? config.rateLimitPerSecond;
  if (perSecond <= 0) return null;
  const burst = grant.rateLimit.burst ?? (config.rateLimitBurst || Math.max(1, Math.ceil(perSecond)));
  // Each of the API_PROCESSES processes holds its share, so the key never exceeds its limit in total.
  const share = config.apiProcesses;
  return { rate: perSecond / share, burst: Math.max(1, Math.floor(burst / share)) };
}

/**
 * Per-key token buckets, in process: each request takes one token; an empty bucket answers 429 rate_limited
 * with `Retry-After` = whole seconds until the next token (at least 1). Runs after authentication and before the
 * body is read: a Map lookup and a little arithmetic.
 */
export function rateLimit(config: Config, metrics: ApiMetrics, now: () => number = performance.now.bind(performance)): Middleware<IngestState> {
  const buckets = new Map<number, Bucket>();
  return async (ctx, next) => {
    const { grant } = ctx.state;
    const limit = processLimit(grant, config);
    if (limit) {
      const t = now();
      let bucket = buckets.get(grant.keyId);
      if (!bucket || bucket.rate !== limit.rate || bucket.burst !== limit.burst) {
        if (buckets.size >= MAX_BUCKETS) buckets.clear();
        bucket = { tokens: limit.burst, at: t, ...limit };
        buckets.set(grant.keyId, bucket);
      } else {
        bucket.tokens = Math.min(bucket.burst, bucket.tokens + ((t - bucket.at) / 1000) * bucket.rate);
        bucket.at = t;
      }
      if (bucket.tokens < 1) {
        metrics.rateLimited.inc({ priority: ctx.state.priority });
        throw apiError('rate_limited', `this API key is limited to ${limit.rate * config.apiProcesses} requests per second`, undefined, {
          'Retry-After': tokenRetryAfter(bucket.tokens, bucket.rate),
        });
      }
      bucket.tokens -= 1;
    }
    await next();
  };
}
