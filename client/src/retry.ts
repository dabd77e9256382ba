// The retry policy: which answers are worth retrying, how long to wait (exponential backoff with full jitter,
// never sooner than the server's Retry-After), and how to read Retry-After.

/** How long to wait between attempts of one batch. */
export interface BackoffPolicy {
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  /** A Retry-After beyond this is taken as this. */
  readonly maxRetryAfterMs: number;
}

/**
 * The wait before retry number `retry` (0 for the first): uniform in [0, min(max, base × 2^retry)) — "full
 * jitter", which spreads the retries of many clients that failed together — and never less than `retryAfterMs`.
 */
export function retryDelayMs(retry: number, policy: BackoffPolicy, random: () => number, retryAfterMs: number | null = null): number {
  const ceiling = Math.min(policy.retryMaxMs, policy.retryBaseMs * 2 ** Math.min(retry, 52));
  const jittered = Math.floor(random() * ceiling);
  return retryAfterMs === null ? jittered : Math.max(jittered, Math.min(retryAfterMs, policy.maxRetryAfterMs));
}

/** Retry-After in ms from delta-seconds or an HTTP date (RFC 9110 §10.2.3); null when absent or unreadable. */
export function parseRetryAfter(header: string | null, now: number): number | null {
  if (header === null) return null;
  const value = header.trim();
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, date - now);
}

/** What an HTTP status means for a batch: delivered, worth retrying, or refused for good. */
export function classifyStatus(status: number): 'accepted' | 'transient' | 'refused' {
  if (status >= 200 && status < 300) return 'accepted';
  // 408 request timeout and 429 rate limited are about timing, not the request; 5xx are the server's trouble.
  if (status === 408 || status === 429 || status >= 500) return 'transient';
  return 'refused';
}
