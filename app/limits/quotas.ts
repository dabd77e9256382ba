import type { Middleware } from 'koa';
import { apiError, type ApiError } from '../../lib/errors.js';
import type { TenantPolicy } from '../../lib/tenant-quotas.js';
import type { IngestState } from '../state.js';
import type { BucketSpec, SharedBuckets, TakeResult } from './shared-bucket.js';
import type { TenantPolicies } from './tenant-policies.js';

const DAY_SECONDS = 86_400;

/** Per-tenant quotas on accepted events, per second and per UTC day, over every API process and host. */
export interface QuotaGuard {
  /** Refuses, before the body is read, a request of a tenant whose quota is known to be spent. */
  precheck(): Middleware<IngestState>;
  /** Takes `events` from the tenant's quotas; throws 429 quota_exceeded (nothing accepted) when one is spent. */
  charge(tenant: string, events: number): void | Promise<void>;
}

const secondId = (tenant: string) => `tenant:${tenant}:second`;
const dayId = (tenant: string) => `tenant:${tenant}:day`;

function exceeded(policy: TenantPolicy, which: 'second' | 'day', retryAfter: string | number): ApiError {
  const what = which === 'second' ? `${policy.eventsPerSecond} events per second` : `${policy.eventsPerDay} events per day (UTC)`;
  return apiError('quota_exceeded', `tenant ${policy.tenant} is over its quota of ${what}; nothing was accepted`, undefined, {
    'Retry-After': String(retryAfter),
  });
}

const settle = <T>(v: T | Promise<T>, then: (v: T) => void | Promise<void>): void | Promise<void> =>
  v instanceof Promise ? v.then(then) : then(v);

/**
 * Quotas count accepted events, so they are charged once a request's events are validated (a batch takes as
 * many as it holds, all or none), from two shared buckets per tenant: a token bucket of `events_per_second`
 * (bucket size one second's worth; a batch larger than that is let through on a full bucket and paid back
 * before the next) and a budget of `events_per_day` that starts afresh at 00:00 UTC. A request of a tenant
 * whose bucket is known to be empty is refused before its body is read, at no cost.
 */
export function createQuotaGuard(buckets: SharedBuckets, policies: TenantPolicies): QuotaGuard {
  const perSecond = (p: TenantPolicy): BucketSpec => ({
    rate: p.eventsPerSecond!,
    burst: Math.max(1, Math.ceil(p.eventsPerSecond!)),
    periodSeconds: 0,
  });
  const perDay = (p: TenantPolicy): BucketSpec => ({ rate: 0, burst: p.eventsPerDay!, periodSeconds: DAY_SECONDS });

  function takeDay(policy: TenantPolicy, events: number, tookSecond: boolean): void | Promise<void> {
    if (policy.eventsPerDay === null) return;
    return settle(buckets.take(dayId(policy.tenant), perDay(policy), events), (r: TakeResult) => {
      if (r.ok) return;
      if (tookSecond) buckets.giveBack(secondId(policy.tenant), events);
      throw exceeded(policy, 'day', r.retryAfter);
    });
  }

  return {
    precheck() {
      return async (ctx, next) => {
        const policy = policies.get(ctx.state.grant.tenant);
        if (policy) {
          if (policy.eventsPerSecond !== null) {
            const wait = buckets.emptyFor(secondId(policy.tenant));
            if (wait > 0) throw exceeded(policy, 'second', wait);
          }
          if (policy.eventsPerDay !== null) {
            const wait = buckets.emptyFor(dayId(policy.tenant));
            if (wait > 0) throw exceeded(policy, 'day', wait);
          }
        }
        await next();
      };
    },
    charge(tenant, events) {
      const policy = policies.get(tenant);
      if (!policy) return;
      if (policy.eventsPerSecond === null) return takeDay(policy, events, false);
      return settle(buckets.take(secondId(tenant), perSecond(policy), events), (r: TakeResult) => {
        if (!r.ok) throw exceeded(policy, 'second', r.retryAfter);
        return takeDay(policy, events, true);
      });
    },
  };
}
