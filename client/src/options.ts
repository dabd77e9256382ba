// The client's options: every default in one place, checked once when the client is created.
import type { FloodgateError } from './errors.js';

/** The three classes the server sheds by, highest first. */
export const PRIORITIES = ['critical', 'normal', 'low'] as const;
export type Priority = (typeof PRIORITIES)[number];

/** Checks a value against the three priority classes. */
export function isPriority(value: unknown): value is Priority {
  return value === 'critical' || value === 'normal' || value === 'low';
}

/** An event delivered to the server: what `onDelivered` receives. */
export interface DeliveredEvent {
  /** The idempotency key the event was sent with. */
  readonly key: string;
  readonly priority: Priority;
  /** The event as given to `track`. */
  readonly event: TrackEvent;
  /** `now()` when `track` was called and when the accepting answer arrived, in ms. */
  readonly trackedAt: number;
  readonly deliveredAt: number;
  /** The id the server answered (a retried event may be stored under the id of an earlier attempt). */
  readonly id: string | null;
}

/** One HTTP attempt, as `onRequest` reports it. */
export interface RequestReport {
  readonly priority: Priority;
  readonly events: number;
  /** Bytes on the wire (after gzip when compressed). */
  readonly bytes: number;
  readonly gzip: boolean;
  /** HTTP status; null when no answer came (connection error, timeout). */
  readonly status: number | null;
  readonly outcome: 'accepted' | 'transient' | 'refused';
  /** The API's error code, or the network error's code, when there is one. */
  readonly errorCode: string | null;
  readonly durationMs: number;
  /** 0 for the first attempt of a batch. */
  readonly attempt: number;
  /** When the batch is retried: the wait before the next attempt, ms. */
  readonly retryInMs: number | null;
}

/** An event as the application tracks it; the fields are those of the Floodgate event schema. */
export interface TrackEvent {
  /** What happened, e.g. `checkout.completed`. */
  readonly type: string;
  /** When it happened; defaults to the time `track` is called (by this machine's clock, corrected by the server when skewed). */
  readonly timestamp?: Date | string | number;
  readonly source?: string;
  readonly value?: number;
  readonly data?: Readonly<Record<string, unknown>>;
  /** Set it to deduplicate across processes (e.g. an order id); otherwise the client generates one per event. */
  readonly idempotency_key?: string;
}

/** Timers the client schedules with; tests inject their own to make schedules deterministic. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Client-side adaptive throttling (Google SRE, "Handling Overload"). */
export interface ThrottleOptions {
  /** Accepts are multiplied by K: the client sends freely until requests exceed K × accepts. */
  readonly k: number;
  /** The window requests and accepts are counted over, ms. */
  readonly windowMs: number;
}

/** What `createClient` takes. Only `url` and `key` are required. */
export interface ClientOptions {
  /** Base URL of the Floodgate API, e.g. `https://ingest.example.com`. */
  readonly url: string;
  /** API key, sent as `Authorization: Bearer <key>`. */
  readonly key: string;
  /** Class of events tracked without one. Default `normal`. */
  readonly priority?: Priority;
  /** Most events in one request. Default 100 (the server takes up to MAX_BATCH_EVENTS, 1000 by default). */
  readonly flushAt?: number;
  /** Most bytes of event JSON in one request, before compression. Default 512 KiB (the server's body limit is 1 MiB). */
  readonly flushBytes?: number;
  /** The longest an event waits for its batch to fill, ms. Default 1000. */
  readonly flushIntervalMs?: number;
  /**
   * Each batch waits a random part of `flushIntervalMs`, uniformly from (1 − flushJitter) × flushIntervalMs to
   * all of it, so that clients started together do not send in step. Default 0.5; 0 waits exactly the interval.
   */
  readonly flushJitter?: number;
  /** Bodies larger than this are gzipped. Default 16 KiB; `Infinity` never compresses. */
  readonly gzipAboveBytes?: number;
  /** Most events held (waiting and in flight). Default 10 000. */
  readonly maxQueueEvents?: number;
  /** Most bytes of event JSON held. Default 16 MiB. */
  readonly maxQueueBytes?: number;
  /** One attempt's timeout, ms. Default 10 000. */
  readonly requestTimeoutMs?: number;
  /** Retries of one batch after transient failures before its events are given up. Default 10. */
  readonly maxRetries?: number;
  /** Full-jitter backoff: the n-th retry waits uniformly in [0, min(retryMaxMs, retryBaseMs × 2ⁿ)). Defaults 200 and 5 000. */
  readonly retryBaseMs?: number;
  readonly retryMaxMs?: number;
  /** A `Retry-After` longer than this is taken as this, ms. Default 60 000. */
  readonly maxRetryAfterMs?: number;
  /** Adaptive throttling per class; `false` turns it off. Default `{ k: 2, windowMs: 10 000 }`. */
  readonly throttle?: ThrottleOptions | false;
  /** Every event not delivered, and why (see FloodgateError codes). Default: none (see `stats()`). */
  readonly onError?: (error: FloodgateError) => void;
  /** Events the server accepted, once per accepting answer. */
  readonly onDelivered?: (events: readonly DeliveredEvent[]) => void;
  /** Every HTTP attempt. */
  readonly onRequest?: (report: RequestReport) => void;
  /** Test seams: randomness for jitter and throttling, the clock, timers and fetch. */
  readonly random?: () => number;
  readonly now?: () => number;
  readonly timers?: Timers;
  readonly fetch?: typeof fetch;
}

/** The options with every default filled in. */
export type ResolvedOptions = Required<Omit<ClientOptions, 'onError' | 'onDelivered' | 'onRequest' | 'throttle'>> &
  Pick<ClientOptions, 'onError' | 'onDelivered' | 'onRequest'> & { readonly throttle: ThrottleOptions | false };

/** The documented defaults. */
export const DEFAULTS = {
  priority: 'normal',
  flushAt: 100,
  flushBytes: 512 * 1024,
  flushIntervalMs: 1000,
  flushJitter: 0.5,
  gzipAboveBytes: 16 * 1024,
  maxQueueEvents: 10_000,
  maxQueueBytes: 16 * 1024 * 1024,
  requestTimeoutMs: 10_000,
  maxRetries: 10,
  retryBaseMs: 200,
  retryMaxMs: 5_000,
  maxRetryAfterMs: 60_000,
  throttle: { k: 2, windowMs: 10_000 },
} as const satisfies Partial<ClientOptions>;

type NumberOption =
  | 'flushAt'
  | 'flushBytes'
  | 'flushIntervalMs'
  | 'flushJitter'
  | 'gzipAboveBytes'
  | 'maxQueueEvents'
  | 'maxQueueBytes'
  | 'requestTimeoutMs'
  | 'maxRetries'
  | 'retryBaseMs'
  | 'retryMaxMs'
  | 'maxRetryAfterMs';
const NUMBER_RULES: Array<[NumberOption, number, number]> = [
  ['flushAt', 1, 100_000],
  ['flushBytes', 1024, 64 * 1024 * 1024],
  ['flushIntervalMs', 0, 3_600_000],
  ['flushJitter', 0, 1],
  ['gzipAboveBytes', 0, Infinity],
  ['maxQueueEvents', 1, 100_000_000],
  ['maxQueueBytes', 1024, 16 * 1024 ** 3],
  ['requestTimeoutMs', 1, 3_600_000],
  ['maxRetries', 0, 1_000_000],
  ['retryBaseMs', 0, 3_600_000],
  ['retryMaxMs', 0, 3_600_000],
  ['maxRetryAfterMs', 0, 86_400_000],
];

const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** Fills in the defaults and checks every option; throws one TypeError listing every problem. */
export function resolveOptions(options: ClientOptions): ResolvedOptions {
  const problems: string[] = [];
  const given = options ?? {};
  let url = '';
  try {
    const parsed = new URL(given.url);
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') problems.push(`url must be http or https, got "${given.url}"`);
    url = `${parsed.origin}${parsed.pathname.replace(/\/+$/, '')}/v1/events`;
  } catch {
    problems.push(`url must be an absolute URL, got "${String(given.url)}"`);
  }
  if (typeof given.key !== 'string' || given.key.length === 0) problems.push('key must be a non-empty string');
  const priority = given.priority ?? DEFAULTS.priority;
  if (!isPriority(priority)) problems.push(`priority must be critical, normal or low, got "${String(priority)}"`);
  const numbers = {} as Record<NumberOption, number>;
  for (const [name, min, max] of NUMBER_RULES) {
    const value = (given as unknown as Record<string, unknown>)[name] ?? DEFAULTS[name];
    if (typeof value !== 'number' || Number.isNaN(value) || value < min || value > max)
      problems.push(`${name} must be a number from ${min} to ${max}, got ${JSON.stringify(value)}`);
    numbers[name] = value as number;
  }
  const throttle = given.throttle === undefined ? DEFAULTS.throttle : given.throttle;
  if (throttle !== false && !(throttle.k >= 1 && throttle.windowMs >= 1000))
    problems.push('throttle needs k ≥ 1 and windowMs ≥ 1000, or false');
  if (problems.length > 0) throw new TypeError(`invalid Floodgate client options:\n  ${problems.join('\n  ')}`);
  return Object.freeze({
    ...numbers,
    url,
    key: given.key,
    priority,
    throttle,
    onError: given.onError,
    onDelivered: given.onDelivered,
    onRequest: given.onRequest,
    random: given.random ?? Math.random,
    now: given.now ?? Date.now,
    timers: given.timers ?? realTimers,
    fetch: given.fetch ?? ((input, init) => fetch(input, init)),
  });
}
