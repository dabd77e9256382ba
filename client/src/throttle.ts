// Client-side adaptive throttling, as in Google's SRE book ("Handling Overload"): each client counts, over a
// sliding window, the requests it wanted to send and the ones the server accepted. While the server accepts
// everything nothing changes; once requests exceed K × accepts, the client refuses a growing share of its own
// requests locally, with probability max(0, (requests − K × accepts) / (requests + 1)). The server spends
// nothing on what the client refused.
//
// A request refused locally is held back and asked about again later; it counts once, not once per asking.
// Counting every re-ask would let the client's own refusals drive the probability up (above ½ each refusal
// adds more to requests than a success removes), so it would stay throttled until the window forgot the
// overload; counted once, every accepted request lowers it, and the client is back to full rate a few
// successes after the server recovers.

/** Throttle state for one class of one client. */
export interface Throttle {
  /** Decides a request the client wants to send (`again`: one this throttle refused before, not counted twice); false = hold it back. */
  allow(again?: boolean): boolean;
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
    allow(again = false) {
      const p = probability();
      if (!again) requests[current % buckets]!++;
      return p === 0 || options.random() >= p;
    },
    accepted() {
      advance();
      accepts[current % buckets]!++;
    },
    rejectProbability: probability,
  };
}
