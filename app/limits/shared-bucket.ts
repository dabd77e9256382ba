import { createHash } from 'node:crypto';
import { Counter, type Registry } from 'prom-client';
import { REDIS_REPLY } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import type { Redis } from '../../lib/redis.js';
import { periodRetryAfter, tokenRetryAfter } from '../retry-after.js';

/**
 * One bucket, in Redis, shared by every API process and host. Token bucket (`period` 0): `rate` tokens per second
 * up to `burst`. Period budget (`period` > 0 seconds): `burst` tokens per period, starting afresh at each period
 * boundary of Redis's clock (86400: a UTC day). Redis's own clock (TIME) is the one clock, whatever the hosts' say.
 *
 * A process calls it with the tokens it `held` (handed in), what it `need`s to hold for the request waiting, and
 * the `lease` it would like on top; `debt` is what it spent while Redis could not be asked, charged whatever is
 * left. When the bucket and the hand-in cover `need`, the process holds `need` plus as much of the lease as there
 * is; otherwise it holds nothing and its hand-in goes back to the bucket, so that tokens leased to a process that
 * is now refusing serve the others. Returns what the process holds now and the ms until `need` tokens would be
 * there (0 when they are).
 */
export const TAKE_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst, need, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local period, debt, ttl, held = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
local window = 0
if period > 0 then
  window = math.floor(now / period)
  if tokens == nil or at ~= window then tokens = burst end
  at = window
else
  if tokens == nil then tokens = burst; at = now end
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
  at = now
end
tokens = math.min(burst, tokens + held) - debt
local hold = 0
if tokens >= need then hold = math.min(need + lease, math.floor(tokens)) end
tokens = tokens - hold
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(at))
redis.call('PEXPIRE', KEYS[1], ttl)
local wait = 0
if tokens < need then
  if period > 0 then wait = ((window + 1) * period - now) * 1000
  elseif rate > 0 then wait = (need - tokens) / rate * 1000
  else wait = -1 end
end
return {hold, math.ceil(wait)}
`;
const TAKE_SHA = createHash('sha1').update(TAKE_SCRIPT).digest('hex');

/** A bucket's shape: a token bucket (`periodSeconds` 0) or a budget per period. */
export interface BucketSpec {
  readonly rate: number;
  readonly burst: number;
  readonly periodSeconds: number;
}

/** What a take answers: granted, or refused with the whole seconds until enough tokens are back. */
export type TakeResult = { readonly ok: true } | Refused;
/** Refused, with the Retry-After (whole seconds, from app/retry-after.ts) until enough tokens are back. */
export type Refused = { readonly ok: false; readonly retryAfter: string };

/** Shared buckets with a local lease each: `take` is synchronous while the lease covers it. */
export interface SharedBuckets {
  /** Takes `n` tokens of bucket `id`. */
  take(id: string, spec: BucketSpec, n: number): TakeResult | Promise<TakeResult>;
  /** Puts back `n` tokens taken a moment ago (another check refused the request). */
  giveBack(id: string, n: number): void;
  /** Seconds until bucket `id` has a token again, when it is known to be empty; 0 otherwise. */
  emptyFor(id: string): number;
}

export interface SharedBucketsDeps {
  /** Absent with QUEUE=postgres (no Redis at all): then `shared` must be false. */
  readonly redis?: Redis;
  /** Prefix of the Redis keys (`<prefix>:<id>`). */
  readonly keyPrefix: string;
  /** API processes: while Redis cannot be asked, each one enforces this share of every bucket. */
  readonly processes: number;
  readonly registry: Registry;
  readonly logger: Logger;
  /** `false`: no Redis, every bucket is the local share (RATE_LIMIT_STORE=local). */
  readonly shared: boolean;
  readonly now?: () => number;
}

/** A lease covers this much of a bucket's rate: one Redis call per ~100 ms of a key's traffic per process. */
const LEASE_SECONDS = 0.1;
/** A period budget is leased in slices of this share of it. */
const PERIOD_LEASE_SHARE = 0.001;
/**
 * A refill that takes longer than this is given up for this request (the local share decides). Far above a
 * healthy Redis's answer (well under a millisecond), high enough that a busy moment does not flip every process
 * to its local share; a request waits at most this long for a slice.
 */
const REFILL_TIMEOUT_MS = 250;
/** After a failed refill, Redis is not asked again for this long: the local share decides meanwhile. */
const FALLBACK_MS = 1000;
/** How long a process takes an empty period budget's word for it before asking again. */
const EMPTY_PERIOD_RECHECK_MS = 1000;
/** Buckets tracked per process; beyond it the map starts afresh (leases are forfeited, never over-granted). */
const MAX_BUCKETS = 100_000;

interface BucketState {
  spec: BucketSpec;
  /** Leased tokens not spent yet. */
  tokens: number;
  /** Tokens spent under the local share while Redis could not be asked: charged at the next refill. */
  debt: number;
  pending: Promise<void> | null;
  /** Redis said the bucket is empty until then (ms, local clock). */
  emptyUntil: number;
  /** The local share: the bucket this process enforces alone while Redis is unreachable. */
  local: { tokens: number; at: number; window: number };
}

const isNoScript = (err: unknown) => err instanceof Error && err.message.startsWith(REDIS_REPLY.noScript);

/** What one of `processes` API processes enforces alone: its share of the rate and of the burst (at least 1). */
export function localShare(spec: BucketSpec, processes: number): BucketSpec {
  return { rate: spec.rate / processes, burst: Math.max(1, Math.floor(spec.burst / processes)), periodSeconds: spec.periodSeconds };
}

/**
 * The slice a process leases on top of what a request needs: LEASE_SECONDS of the rate (a share of a period
 * budget), never more than half the burst. Below one token, none: a bucket that slow is asked for each request,
 * which costs little at its rate and keeps a slice held by one process from being missed by another.
 */
function leaseFor(spec: BucketSpec): number {
  if (spec.periodSeconds > 0) return Math.floor(spec.burst * PERIOD_LEASE_SHARE);
  return Math.floor(Math.min(spec.rate * LEASE_SECONDS, spec.burst / 2));
}

/** TTL of a bucket's key: long enough to remember it until it would be full again anyway. */
function ttlMs(spec: BucketSpec): number {
  if (spec.periodSeconds > 0) return Math.ceil(spec.periodSeconds * 1000 * 2);
  return Math.ceil(Math.max(1, spec.burst / Math.max(spec.rate, 1e-9)) * 1000 * 2);
}

/**
 * Token buckets shared across API processes and hosts through Redis, at a small cost per request: each process
 * leases tokens in slices (LEASE_SECONDS of the rate) with one EVALSHA of TAKE_SCRIPT, spends them locally, and
 * asks for the next slice before the lease runs out. A bucket Redis said is empty refuses locally until it
 * refills, so a key hammering its limit costs no Redis call per refused request. The price of leasing: a
 * process may hold up to one slice another process could have used.
 *
 * Redis down (not connected, an error, or no answer within REFILL_TIMEOUT_MS): each process enforces its share
 * (rate / API_PROCESSES, burst / API_PROCESSES) locally — fail open to the local share — and what it spent is
 * charged to the shared bucket once Redis answers again.
 */
export function createSharedBuckets(deps: SharedBucketsDeps): SharedBuckets {
  const { redis, keyPrefix, processes } = deps;
  const now = deps.now ?? (() => performance.now());
  const log = deps.logger.child({ scope: 'shared-limits' });
  const buckets = new Map<string, BucketState>();
  let fallbackUntil = 0;
  let lastLogged = 0;
  const calls = new Counter({
    name: 'floodgate_shared_limit_calls_total',
    help: 'Refills of the shared rate-limit and quota buckets in Redis, by outcome (granted, empty, error); local: decided by the local share.',
    labelNames: ['outcome'],
    registers: [deps.registry],
  });
  for (const outcome of ['granted', 'empty', 'error', 'local']) calls.inc({ outcome }, 0);

  function state(id: string, spec: BucketSpec): BucketState {
    let s = buckets.get(id);
    if (s && s.spec.rate === spec.rate && s.spec.burst === spec.burst && s.spec.periodSeconds === spec.periodSeconds) return s;
    if (!s && buckets.size >= MAX_BUCKETS) buckets.clear();
    const share = { tokens: localShare(spec, processes).burst, at: now(), window: -1 };
    s = { spec, tokens: 0, debt: s?.debt ?? 0, pending: null, emptyUntil: 0, local: share };
    buckets.set(id, s);
    return s;
  }

  /** The local share's answer (Redis cannot be asked); what it grants is owed to the shared bucket. */
  function takeLocally(s: BucketState, n: number): TakeResult {
    calls.inc({ outcome: 'local' });
    const { local } = s;
    const share = localShare(s.spec, processes);
    const t = now();
    if (share.periodSeconds > 0) {
      const window = Math.floor(Date.now() / 1000 / share.periodSeconds);
      if (local.window !== window) Object.assign(local, { window, tokens: share.burst });
    } else {
      local.tokens = Math.min(share.burst, local.tokens + ((t - local.at) / 1000) * share.rate);
      local.at = t;
    }
    const core = Math.min(n, share.burst);
    if (local.tokens < core) return { ok: false, retryAfter: retryAfter(s, local.tokens, core, share.rate) };
    local.tokens -= n;
    s.debt += n;
    return { ok: true };
  }

  /** Until a bucket holding `tokens` has `need` again: the end of the period, or the refill at `rate`. */
  function retryAfter(s: BucketState, tokens: number, need: number, rate: number): string {
    return s.spec.periodSeconds > 0 ? periodRetryAfter(s.spec.periodSeconds) : tokenRetryAfter(tokens, Math.max(rate, 1e-9), need);
  }

  async function evalTake(key: string, args: number[]): Promise<[number, number]> {
    try {
      return (await redis!.evalsha(TAKE_SHA, 1, key, ...args)) as [number, number];
    } catch (err) {
      if (!isNoScript(err)) throw err;
      // First call on this Redis (or after SCRIPT FLUSH / a restart): EVAL loads the script for the next EVALSHA.
      return (await redis!.eval(TAKE_SCRIPT, 1, key, ...args)) as [number, number];
    }
  }

  /**
   * Asks Redis to top the lease up to `n` tokens plus a slice. For a request that waits (`n` > 0) the lease is
   * handed in with the call (and so cannot be spent twice meanwhile); a top-up ahead of need (`n` 0) hands in
   * nothing. On failure (or no answer in time) the local share decides for FALLBACK_MS.
   */
  function refill(id: string, s: BucketState, n: number): Promise<void> {
    const held = n > 0 ? s.tokens : 0;
    s.tokens -= held;
    const debt = s.debt;
    s.debt = 0;
    const { rate, burst, periodSeconds } = s.spec;
    const lease = leaseFor(s.spec);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer from Redis within ${REFILL_TIMEOUT_MS} ms`)), REFILL_TIMEOUT_MS);
    });
    const call = evalTake(`${keyPrefix}:${id}`, [rate, burst, Math.max(1, n), lease, periodSeconds, debt, ttlMs(s.spec), held]);
    // A call that answers after its timeout still counts: what it says the process holds is the truth.
    const answered = call.then(([hold, waitMs]) => {
      s.tokens += hold;
      calls.inc({ outcome: hold > 0 ? 'granted' : 'empty' });
      // An empty period budget is asked again within a second, not at the period's end: tokens another process
      // hands in are then found (Retry-After still says when the period ends).
      s.emptyUntil = waitMs > 0 ? now() + (s.spec.periodSeconds > 0 ? Math.min(waitMs, EMPTY_PERIOD_RECHECK_MS) : waitMs) : 0;
    });
    return Promise.race([answered, timeout])
      .catch((err: unknown) => {
        s.debt += debt;
        calls.inc({ outcome: 'error' });
        fallbackUntil = now() + FALLBACK_MS;
        if (Date.now() - lastLogged > 10_000) {
          lastLogged = Date.now();
          log.warn({ err }, 'shared limits: Redis cannot be asked, each process enforces its share');
        }
        // Never answered: the hand-in is still this process's (were it lost, the bucket would only be stricter).
        answered.catch(() => (s.tokens += held));
      })
      .finally(() => {
        clearTimeout(timer);
        s.pending = null;
      });
  }

  function refused(s: BucketState, n: number): Refused {
    const own = retryAfter(s, s.tokens, n, s.spec.rate);
    if (s.spec.periodSeconds > 0) return { ok: false, retryAfter: own };
    // The shared bucket's wait (what Redis said) when it is longer than this process's own arithmetic.
    return { ok: false, retryAfter: String(Math.max(Number(own), Math.ceil((s.emptyUntil - now()) / 1000))) };
  }

  async function acquire(id: string, s: BucketState, n: number): Promise<TakeResult> {
    // Two rounds at most: a refill in flight (a top-up, or one for other waiters) may leave too little for this one.
    for (let round = 0; round < 2; round++) {
      await (s.pending ??= refill(id, s, n));
      if (s.tokens >= n) {
        s.tokens -= n;
        return { ok: true };
      }
      if (now() < fallbackUntil) return takeLocally(s, n);
    }
    return refused(s, n);
  }

  return {
    take(id, spec, n) {
      const s = state(id, spec);
      if (!deps.shared || redis?.status !== 'ready' || now() < fallbackUntil) return takeLocally(s, n);
      // A request larger than the whole bucket goes through on a full one and pays the rest back (as debt, charged
      // at the next refill) before anything else goes through.
      const core = Math.min(n, spec.burst);
      const owe = (r: TakeResult) => {
        if (r.ok && n > core) s.debt += n - core;
        return r;
      };
      if (s.tokens >= core) {
        s.tokens -= core;
        // Ask for the next slice before this one runs out, so that requests rarely wait for Redis.
        const lease = leaseFor(spec);
        if (lease > 0 && s.tokens < lease / 2 && !s.pending && s.emptyUntil <= now()) s.pending = refill(id, s, 0);
        return owe({ ok: true });
      }
      // Known empty: refused here without a Redis call, unless this process holds a part to hand in.
      if (s.emptyUntil > now() && s.tokens <= 0) return refused(s, core);
      return acquire(id, s, core).then(owe);
    },
    giveBack(id, n) {
      const s = buckets.get(id);
      if (!s) return;
      if (!deps.shared || now() < fallbackUntil) {
        s.local.tokens += n;
        s.debt = Math.max(0, s.debt - n);
      } else s.tokens += n;
    },
    emptyFor(id) {
      const s = buckets.get(id);
      if (!s || s.tokens >= 1 || s.emptyUntil <= now()) return 0;
      return Number(refused(s, 1).retryAfter);
    },
  };
}
