import { isIPv6 } from 'node:net';

// A bound on the addresses remembered, so a spoofed or IPv6-wide flood cannot grow the map without limit.
const MAX_ADDRESSES = 100_000;

/** How many failed authentications each client address may have, refilled over time. */
export interface FailureBudget {
  /** Whole seconds until `address` may fail again; 0 while it has budget left. */
  retryAfter(address: string): number;
  /** Takes one failed authentication from `address`'s budget. */
  fail(address: string): void;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * The budget a client address has for failed authentications: a token bucket of `burst` failures refilled at
 * `perMinute`. Its point is to refuse a flood of guessed keys before each one costs a Postgres lookup.
 * `burst` 0 turns it off.
 */
export function createFailureBudget(
  options: { burst: number; perMinute: number; maxAddresses?: number },
  now: () => number = performance.now.bind(performance),
): FailureBudget {
  const { burst, perMinute } = options;
  const maxAddresses = options.maxAddresses ?? MAX_ADDRESSES;
  const perMs = perMinute / 60_000;
  const buckets = new Map<string, Bucket>();

  function refilled(address: string): Bucket | undefined {
    const bucket = buckets.get(addressKey(address));
    if (!bucket) return undefined;
    const t = now();
    bucket.tokens = Math.min(burst, bucket.tokens + (t - bucket.at) * perMs);
    bucket.at = t;
    return bucket;
  }

  return {
    retryAfter(address) {
      if (burst === 0) return 0;
      const bucket = refilled(address);
      if (!bucket || bucket.tokens >= 1) return 0;
      return Math.max(1, Math.ceil((1 - bucket.tokens) / perMs / 1000));
    },
    fail(address) {
      if (burst === 0) return;
      const bucket = refilled(address);
      if (bucket) {
        bucket.tokens = Math.max(0, bucket.tokens - 1);
        return;
      }
      // The oldest address goes first: it has had the longest to refill anyway.
      if (buckets.size >= maxAddresses) buckets.delete(buckets.keys().next().value!);
      buckets.set(addressKey(address), { tokens: burst - 1, at: now() });
    },
  };
}

/**
 * The unit a budget is kept for: an IPv4 address, or an IPv6 /64 (one host usually holds a whole /64, so
 * counting single IPv6 addresses would hand an attacker 2^64 budgets).
 */
export function addressKey(address: string): string {
  if (address.startsWith('::ffff:') && address.includes('.')) return address.slice(7);
  if (!isIPv6(address)) return address;
  const [head = '', tail = ''] = address.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = address.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups
    .slice(0, 4)
    .map((g) => g.toLowerCase().replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}
