// Client-side adaptive throttling, as in Google's SRE book ("Handling Overload"): each client counts, over a
// sliding window, the requests it wanted to send and the ones the server accepted. While the server accepts
// everything nothing changes; once requests exceed K × accepts, the client refuses a growing share of its own
// requests locally, with probability max(0, (requests − K × accepts) / (requests + 1)). The server spends
// nothing on what the client refused, and the client sends again as soon as accepts return.

/** Throttle state for one class of one client. */
export interface Throttle {
  /** Counts a request the client wants to send; false means "refused locally: do not send now". */
  allow(): boolean;
  /** The server took a request (any answer but 429/5xx/no answer). */
  accepted(): void;
  /** The probability with which the next request is refused locally. */
  rejectProbability(): number;
}

const BUCKET_MS = 1000;

/** A throttle with `k` and a window of `windowMs` (counted in 1 s buckets). */
export function createThrottle(options: { k: number; windowMs: number; now: () => number; random: () => number }): Throttle {
  const buckets = Math.max(1, Math.round(options.windowMs / BUCKET_MS));
  const requests = new Float64Array(buckets);
  const accepts = new Float64Array(buckets);
  let current = Math.floor(options.now() / BUCKET_MS);

  /** Moves the window to now, clearing the buckets that fell out of it. */
  const advance = () => {
    const bucket = Math.floor(options.now() / BUCKET_MS);
    if (bucket <= current) return;
    for (let b = current + 1; b <= Math.min(bucket, current + buckets); b++) {
      requests[b % buckets] = 0;
      accepts[b % buckets] = 0;
    }
    current = bucket;
  };
  const sum = (xs: Float64Array) => xs.reduce((a, b) => a + b, 0);
  const probability = () => {
    advance();
    const r = sum(requests);
    return Math.max(0, (r - options.k * sum(accepts)) / (r + 1));
  };
  return {
    allow() {
      const p = probability();
      requests[current % buckets]!++;
      return p === 0 || options.random() >= p;
    },
    accepted() {
      advance();
      accepts[current % buckets]!++;
    },
    rejectProbability: probability,
  };
}
