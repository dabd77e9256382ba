/**
 * The one Retry-After policy of the API. A refusal that asks the client to come back shortly (the shedder's
 * `overloaded`, a dependency's `dependency_unavailable`) gets a jittered wait so that the refused clients do
 * not all come back in the same second; a rate limit gets the time until its bucket holds a token again.
 */

/** Shortest and longest wait, in whole seconds, of a jittered Retry-After. */
export const JITTERED_RETRY_AFTER = { min: 1, max: 5 } as const;

/** A Retry-After uniformly drawn from 1–5 s, for `overloaded` and `dependency_unavailable`. */
export function jitteredRetryAfter(random: () => number = Math.random): string {
  const { min, max } = JITTERED_RETRY_AFTER;
  return String(min + Math.floor(random() * (max - min + 1)));
}

/** A rate limit's Retry-After: whole seconds until a bucket holding `tokens` refills to `need` tokens (one by default), at least 1. */
export function tokenRetryAfter(tokens: number, ratePerSecond: number, need = 1): string {
  return String(Math.max(1, Math.ceil((need - tokens) / ratePerSecond)));
}

/** A budget per period's Retry-After: whole seconds until the period that holds `nowSeconds` ends (a UTC day for 86400), at least 1. */
export function periodRetryAfter(periodSeconds: number, nowSeconds: number = Date.now() / 1000): string {
  return String(Math.max(1, Math.ceil(periodSeconds - (nowSeconds % periodSeconds))));
}
