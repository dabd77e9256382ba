import CircuitBreaker from 'opossum';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Config } from './config.js';
import type { Logger } from './logger.js';

/** A breaker's state as the metrics, the logs and GET /v1/admin/load name it. */
export type BreakerState = 'closed' | 'half_open' | 'open';

/** The gauge value of each state: ordered by severity so `max` across processes shows the worst. */
export const BREAKER_STATE_VALUE: Readonly<Record<BreakerState, number>> = { closed: 0, half_open: 1, open: 2 };
const STATES = Object.keys(BREAKER_STATE_VALUE) as BreakerState[];

/** Error codes opossum gives its own rejections (https://nodeshift.dev/opossum/#circuitbreaker). */
export const BREAKER_CODE = {
  /** The breaker is open (or half-open with its one trial already in flight): the call was not tried. */
  open: 'EOPENBREAKER',
  /** `capacity` calls were already running: the call was not tried. */
  semaphoreLocked: 'ESEMLOCKED',
  /** The breaker was shut down. */
  shutdown: 'ESHUTDOWN',
  /** The call took longer than the breaker's timeout and was aborted (ours, see `fire`). */
  timeout: 'ETIMEDOUT',
} as const;

/** The rejection of a call that took longer than the breaker's timeout; its AbortSignal was aborted with it. */
export class BreakerTimeoutError extends Error {
  readonly code = BREAKER_CODE.timeout;
  constructor(breaker: string, timeoutMs: number) {
    super(`${breaker}: timed out after ${timeoutMs} ms`);
    this.name = 'BreakerTimeoutError';
  }
}

/** Whether `err` is the breaker refusing or abandoning a call (open, at capacity, timed out), not the call's own failure. */
export function isBreakerRejection(err: unknown): boolean {
  return err instanceof BreakerTimeoutError || (err instanceof Error && CircuitBreaker.isOurError(err));
}

export interface BreakerOptions {
  /** Stable label value: `redis_write`, `postgres_write`, `gate_normal`, `gate_low`. */
  readonly name: string;
  readonly registry: Registry;
  readonly logger: Logger;
  /** Per-call timeout in ms: the call's AbortSignal is aborted and the caller rejected; 0 for none. */
  readonly timeoutMs: number;
  /** Open → half-open after this long. */
  readonly resetTimeoutMs: number;
  /** Failure percentage in the rolling window that opens it. */
  readonly errorThresholdPercent?: number;
  /** Calls the window must hold before failures can open it. */
  readonly volumeThreshold?: number;
  readonly windowMs?: number;
  /** Concurrent calls; more are rejected with ESEMLOCKED (not counted as a failure). */
  readonly capacity?: number;
  /** Errors that are the caller's fault (bad rows, invalid input): the dependency answered, so they do not count. */
  readonly isCallerError?: (err: unknown) => boolean;
  /** false: calls run unprotected and it never opens on failures (opossum's `enabled`). */
  readonly enabled?: boolean;
}

/**
 * The signal of calls without a timeout. Creating an AbortController costs microseconds (≈3 µs measured), a
 * measurable share of an ingest request, so calls that need none share this one.
 */
const NEVER_ABORTED = new AbortController().signal;

/** A circuit breaker whose calls receive an AbortSignal that fires on timeout. */
export interface Breaker {
  readonly name: string;
  /** Runs `call` through the breaker; rejects fast while open. */
  fire<T>(call: (signal: AbortSignal) => Promise<T>): Promise<T>;
  state(): BreakerState;
  /** Forces it open (the controller opening a class gate); half-open follows after the reset timeout. */
  open(): void;
  close(): void;
  /** Stops its timers; later calls are rejected. */
  shutdown(): void;
}

/**
 * A breaker around a dependency (the API's Redis write, the worker's Postgres write): it opens on the
 * configured share of failures (BREAKER_ERROR_THRESHOLD_PERCENT of at least BREAKER_VOLUME_THRESHOLD calls
 * in BREAKER_WINDOW_MS) and probes again after BREAKER_RESET_TIMEOUT_MS.
 */
export function createDependencyBreaker(
  config: Config,
  options: Omit<BreakerOptions, 'resetTimeoutMs' | 'errorThresholdPercent' | 'volumeThreshold' | 'windowMs'>,
): Breaker {
  return createBreaker({
    resetTimeoutMs: config.breakerResetTimeoutMs,
    errorThresholdPercent: config.breakerErrorThresholdPercent,
    volumeThreshold: config.breakerVolumeThreshold,
    windowMs: config.breakerWindowMs,
    ...options,
  });
}

interface BreakerMetrics {
  readonly state: Gauge<'breaker'>;
  readonly transitions: Counter<'breaker' | 'to'>;
}

/** One state gauge and one transitions counter per registry, shared by every breaker registered in it. */
function breakerMetrics(registry: Registry): BreakerMetrics {
  const state =
    (registry.getSingleMetric('floodgate_breaker_state') as Gauge<'breaker'> | undefined) ??
    new Gauge({
      name: 'floodgate_breaker_state',
      help: 'Circuit breaker state: 0 closed, 1 half-open, 2 open.',
      labelNames: ['breaker'],
      registers: [registry],
      // The cluster primary keeps the worst state across API processes, matching the dashboards' max by (breaker).
      aggregator: 'max',
    });
  const transitions =
    (registry.getSingleMetric('floodgate_breaker_transitions_total') as Counter<'breaker' | 'to'> | undefined) ??
    new Counter({
      name: 'floodgate_breaker_transitions_total',
      help: 'Circuit breaker state changes, by breaker and the state entered.',
      labelNames: ['breaker', 'to'],
      registers: [registry],
    });
  return { state, transitions };
}

/**
 * Wraps opossum with Floodgate's defaults, avoiding its traps:
 * - semaphore (`capacity`) rejections are not failures (errorFilter), except during half-open, where the one
 *   trial being turned away must not count as the dependency's success;
 * - caller errors (`isCallerError`) are not failures either: the dependency answered;
 * - timeouts abort the call through a per-call AbortSignal. opossum's own `abortController` option is one
 *   controller for all calls: a single timeout would abort every concurrent call and leave the signal aborted
 *   until the next state change, so the timeout is enforced here instead (opossum's `timeout` is off).
 * State and transitions go to `floodgate_breaker_state` / `floodgate_breaker_transitions_total` in the registry,
 * present from the start (state 0, transitions 0) so that rates and alerts work before the first change.
 */
export function createBreaker(options: BreakerOptions): Breaker {
  const { name, timeoutMs } = options;
  const log = options.logger.child({ scope: 'breaker', breaker: name });
  const metrics = breakerMetrics(options.registry);

  async function run(call: (signal: AbortSignal) => Promise<unknown>): Promise<unknown> {
    if (timeoutMs <= 0) return call(NEVER_ABORTED);
    const abort = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new BreakerTimeoutError(name, timeoutMs);
        abort.abort(err);
        reject(err);
      }, timeoutMs);
    });
    try {
      // The race frees the caller even when `call` ignores its signal; a late settle of `call` is then ignored.
      return await Promise.race([call(abort.signal), timedOut]);
    } finally {
      clearTimeout(timer);
    }
  }

  const circuit: CircuitBreaker<[(signal: AbortSignal) => Promise<unknown>], unknown> = new CircuitBreaker(run, {
    name,
    timeout: false,
    resetTimeout: options.resetTimeoutMs,
    errorThresholdPercentage: options.errorThresholdPercent ?? 50,
    volumeThreshold: options.volumeThreshold ?? 10,
    rollingCountTimeout: options.windowMs ?? 10_000,
    rollingCountBuckets: 10,
    rollingPercentilesEnabled: false,
    enableSnapshots: false,
    capacity: options.capacity,
    enabled: options.enabled ?? true,
    errorFilter: (err: unknown) => {
      if ((err as { code?: string })?.code === BREAKER_CODE.semaphoreLocked) return !circuit.halfOpen;
      return options.isCallerError?.(err) ?? false;
    },
  });

  const state = (): BreakerState => (circuit.opened ? 'open' : circuit.halfOpen ? 'half_open' : 'closed');
  metrics.state.set({ breaker: name }, BREAKER_STATE_VALUE.closed);
  for (const to of STATES) metrics.transitions.inc({ breaker: name, to }, 0);

  const enter = (to: BreakerState) => {
    metrics.state.set({ breaker: name }, BREAKER_STATE_VALUE[to]);
    metrics.transitions.inc({ breaker: name, to });
  };
  circuit.on('open', () => {
    enter('open');
    log.warn({ retryInMs: options.resetTimeoutMs }, 'circuit breaker opened');
  });
  circuit.on('halfOpen', () => {
    enter('half_open');
    log.info('circuit breaker half-open: letting one trial call through');
  });
  circuit.on('close', () => {
    enter('closed');
    log.info('circuit breaker closed');
  });

  return {
    name,
    fire: <T>(call: (signal: AbortSignal) => Promise<T>) => circuit.fire(call) as Promise<T>,
    state,
    open: () => circuit.open(),
    close: () => circuit.close(),
    shutdown: () => circuit.shutdown(),
  };
}
