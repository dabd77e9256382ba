import { Counter, Registry } from 'prom-client';
import { findApiKey, type KeyGrant } from '../lib/api-keys.js';
import type { Config } from '../lib/config.js';
import type { Pool } from '../lib/db.js';
import { createFailureBudget, type FailureBudget } from './auth-failures.js';

// Verified keys are few (one or a handful per client); the bound only stops a pathological churn.
const MAX_VALID_KEYS = 10_000;
// Unknown keys are cached too (a client hammering with one bad key costs no database round trip), in their own
// bounded map: a flood of random keys pushes out older random keys, never a verified one.
const MAX_UNKNOWN_KEYS = 10_000;
// …and briefly, so a key created a moment ago starts working quickly.
const MAX_UNKNOWN_TTL_MS = 5000;
// While revocations cannot be delivered (the Redis feed is down), a verified key is trusted this long only.
const UNFED_TTL_MS = 1000;

type LookupResult = 'valid' | 'unknown' | 'error';

/** Resolves presented API keys to grants, with an in-process cache and one lookup per key at a time. */
export interface KeyResolver {
  /** The key's grant, from the cache or Postgres; null when unknown, revoked or expired. */
  resolve(key: string): Promise<KeyGrant | null>;
  /** What the cache knows without a lookup: a grant, null for a key known to be invalid, undefined otherwise. */
  peek(key: string): KeyGrant | null | undefined;
  /** Forgets the cached grants of these keys (revoked or rotated by another process). */
  invalidate(keyIds: readonly number[]): void;
  /** Forgets every cached grant (invalidations may have been missed). */
  invalidateAll(): void;
  /** Whether invalidations are being delivered; until they are, verified keys are looked up again every second. */
  setFed(fed: boolean): void;
  /** Each client address's budget of failed authentications, shared by every route of this process. */
  readonly failures: FailureBudget;
}

interface ValidEntry {
  readonly grant: KeyGrant;
  readonly cachedAt: number;
}

export interface KeyResolverDeps {
  readonly pool: Pool;
  readonly config: Pick<Config, 'authCacheTtlMs' | 'authFailureBurst' | 'authFailureRatePerMinute'>;
  /** Where the lookup counter goes; a private registry when omitted. */
  readonly registry?: Registry;
  readonly now?: () => number;
}

/** A KeyResolver over Postgres, so that authentication costs no round trip per request. */
export function createKeyResolver(deps: KeyResolverDeps): KeyResolver {
  const { pool, config } = deps;
  const now = deps.now ?? Date.now;
  const ttlMs = config.authCacheTtlMs;
  const unknownTtlMs = Math.min(ttlMs, MAX_UNKNOWN_TTL_MS);
  const lookups = new Counter({
    name: 'floodgate_auth_key_lookups_total',
    help: 'API keys looked up in Postgres (cache misses), by result: valid, unknown (or revoked, expired) or error.',
    labelNames: ['result'],
    registers: [deps.registry ?? new Registry()],
  });
  for (const result of ['valid', 'unknown', 'error'] satisfies LookupResult[]) lookups.inc({ result }, 0);

  const valid = new Map<string, ValidEntry>();
  const unknown = new Map<string, number>();
  const inFlight = new Map<string, Promise<KeyGrant | null>>();
  let fed = false;
  // Bumped by every invalidation: a lookup that started before it may have read the old row, so it is not cached.
  let generation = 0;

  function remember(key: string, grant: KeyGrant | null): void {
    const cache: Map<string, unknown> = grant ? valid : unknown;
    const max = grant ? MAX_VALID_KEYS : MAX_UNKNOWN_KEYS;
    cache.delete(key);
    if (cache.size >= max) cache.delete(cache.keys().next().value!);
    if (grant) valid.set(key, { grant, cachedAt: now() });
    else unknown.set(key, now() + unknownTtlMs);
  }

  function peek(key: string): KeyGrant | null | undefined {
    const t = now();
    const hit = valid.get(key);
    if (hit) {
      if (hit.grant.expiresAt && hit.grant.expiresAt.getTime() <= t) {
        // Expired since it was cached: refused from that instant, without asking the database again.
        valid.delete(key);
        remember(key, null);
        return null;
      }
      if (t - hit.cachedAt < (fed ? ttlMs : Math.min(ttlMs, UNFED_TTL_MS))) return hit.grant;
      valid.delete(key);
      return undefined;
    }
    const until = unknown.get(key);
    if (until === undefined) return undefined;
    if (until > t) return null;
    unknown.delete(key);
    return undefined;
  }

  return {
    failures: createFailureBudget({ burst: config.authFailureBurst, perMinute: config.authFailureRatePerMinute }),
    peek,
    resolve(key) {
      const cached = peek(key);
      if (cached !== undefined) return Promise.resolve(cached);
      const pending = inFlight.get(key);
      if (pending) return pending;
      const started = generation;
      const lookup = findApiKey(pool, key)
        .then(
          (grant) => {
            lookups.inc({ result: grant ? 'valid' : 'unknown' });
            if (generation === started) remember(key, grant);
            return grant;
          },
          (err: unknown) => {
            lookups.inc({ result: 'error' });
            throw err;
          },
        )
        .finally(() => inFlight.delete(key));
      inFlight.set(key, lookup);
      return lookup;
    },
    invalidate(keyIds) {
      generation++;
      const ids = new Set(keyIds);
      // A scan: revocations are rare and the map small, so no second index to keep in step.
      for (const [key, entry] of valid) if (ids.has(entry.grant.keyId)) valid.delete(key);
    },
    invalidateAll() {
      generation++;
      valid.clear();
      unknown.clear();
    },
    setFed(value) {
      fed = value;
    },
  };
}
