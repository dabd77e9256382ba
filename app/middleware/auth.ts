import type { Middleware } from 'koa';
import { findApiKey, type KeyGrant, type Scope } from '../../lib/api-keys.js';
import type { Pool } from '../../lib/db.js';
import { apiError } from '../../lib/errors.js';

const MAX_CACHED_KEYS = 10_000;
// Unknown keys are cached too (so a client hammering with a bad key costs no database round trip), but briefly,
// so a key created a moment ago starts working quickly.
const MAX_NEGATIVE_TTL_MS = 5000;

interface CacheEntry {
  readonly grant: KeyGrant | null;
  readonly expiresAt: number;
}

/** Resolves presented API keys to grants, with a short in-process cache and one lookup per key at a time. */
export interface KeyResolver {
  resolve(key: string): Promise<KeyGrant | null>;
}

/** A KeyResolver over Postgres with a TTL cache, so authentication costs no round trip per request. */
export function createKeyResolver(pool: Pool, ttlMs: number, now: () => number = Date.now): KeyResolver {
  const cache = new Map<string, CacheEntry>();
  const inFlight = new Map<string, Promise<KeyGrant | null>>();
  return {
    resolve(key) {
      const hit = cache.get(key);
      if (hit && hit.expiresAt > now()) return Promise.resolve(hit.grant);
      const pending = inFlight.get(key);
      if (pending) return pending;
      const lookup = findApiKey(pool, key)
        .then((grant) => {
          if (cache.size >= MAX_CACHED_KEYS) cache.clear();
          cache.set(key, { grant, expiresAt: now() + (grant ? ttlMs : Math.min(ttlMs, MAX_NEGATIVE_TTL_MS)) });
          return grant;
        })
        .finally(() => inFlight.delete(key));
      inFlight.set(key, lookup);
      return lookup;
    },
  };
}

function presentedKey(authorization: string, apiKeyHeader: string): string | null {
  if (authorization) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    return match ? match[1]! : null;
  }
  return apiKeyHeader || null;
}

/** Requires `Authorization: Bearer <key>` or `X-Api-Key` holding `options.scope`; puts the grant in `ctx.state.grant`. */
export function authenticate(keys: KeyResolver, options: { scope: Scope }): Middleware {
  return async (ctx, next) => {
    const key = presentedKey(ctx.get('authorization'), ctx.get('x-api-key'));
    if (!key || key.length > 256) {
      throw apiError('unauthorized', 'missing API key: send "Authorization: Bearer <key>" or "X-Api-Key: <key>"', undefined, {
        'WWW-Authenticate': 'Bearer',
      });
    }
    let grant: KeyGrant | null;
    try {
      grant = await keys.resolve(key);
    } catch {
      throw apiError('dependency_unavailable', 'cannot verify the API key right now', undefined, { 'Retry-After': '1' });
    }
    if (!grant) throw apiError('unauthorized', 'unknown or revoked API key', undefined, { 'WWW-Authenticate': 'Bearer' });
    if (!grant.scopes.includes(options.scope)) throw apiError('forbidden', `this endpoint needs a key with the "${options.scope}" scope`);
    ctx.state.grant = grant;
    await next();
  };
}
