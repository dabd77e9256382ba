import type { Middleware } from 'koa';
import type { KeyGrant } from '../../lib/api-keys.js';
import type { Config } from '../../lib/config.js';
import { apiError } from '../../lib/errors.js';
import type { BucketSpec, SharedBuckets } from '../limits/shared-bucket.js';
import type { ApiMetrics } from '../metrics.js';
import type { IngestState } from '../state.js';

/** The limit of a key over every API process and host together, or null when the key is unlimited. */
export function keyLimit(grant: KeyGrant, config: Config): BucketSpec | null {
  const rate = grant.rateLimit.perSecond ?? config.rateLimitPerSecond;
  if (rate <= 0) return null;
  const burst = grant.rateLimit.burst ?? (config.rateLimitBurst || Math.max(1, Math.ceil(rate)));
  return { rate, burst, periodSeconds: 0 };
}

/**
 * Per-key token buckets: each request takes one token; an empty bucket answers 429 rate_limited with
 * `Retry-After` = whole seconds until the next token (at least 1). The bucket is shared by every API process
 * (see `shared-bucket.ts`: leased from Redis, or each process's share when Redis cannot be asked). Runs after
 * authentication and before the body is read; usually a map lookup and some arithmetic.
 */
export function rateLimit(config: Config, metrics: ApiMetrics, buckets: SharedBuckets): Middleware<IngestState> {
  return async (ctx, next) => {
    const { grant } = ctx.state;
    const limit = keyLimit(grant, config);
    if (limit) {
      const taken = buckets.take(`key:${grant.keyId}`, limit, 1);
      const result = taken instanceof Promise ? await taken : taken;
      if (!result.ok) {
        metrics.rateLimited.inc({ priority: ctx.state.priority });
        throw apiError('rate_limited', `this API key is limited to ${limit.rate} requests per second`, undefined, {
          'Retry-After': result.retryAfter,
        });
      }
    }
    await next();
  };
}
