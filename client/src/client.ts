// The client: `track` serialises an event once, gives it an idempotency key and queues it in its class; one lane
// per class sends that class's batches one at a time (the server sheds by class, from X-Priority, so a batch
// holds one class), retrying transient failures with backoff and throttling itself when the server refuses.
import { randomUUID } from 'node:crypto';
import { FloodgateError, type ErrorCode, type FailedEvent } from './errors.js';
import {
  isPriority,
  PRIORITIES,
  resolveOptions,
  type ClientOptions,
  type DeliveredEvent,
  type Priority,
  type TrackEvent,
} from './options.js';
import { createEventQueue, type QueuedEvent } from './queue.js';
import { retryDelayMs } from './retry.js';
import { createThrottle, type Throttle } from './throttle.js';
import { sendBatch, type FieldError, type Outcome } from './transport.js';

/** Counters since the client was created. tracked = delivered + rejected + refused + exhausted + dropped + tooLarge + closed + held.events. */
export interface ClientStats {
  tracked: number;
  delivered: number;
  /** Events the server refused as invalid (`event_rejected`). */
  rejected: number;
  /** Events of requests refused as a whole (`batch_refused`). */
  refused: number;
  /** Events given up after `maxRetries` (`retries_exhausted`). */
  exhausted: number;
  /** Events dropped because the queue was full, per class (`queue_full`). */
  dropped: Record<Priority, number>;
  tooLarge: number;
  /** Tracked after close, or undelivered at its deadline (`client_closed`). */
  closed: number;
  /** Events waiting or in flight, and their JSON bytes. */
  held: { events: number; bytes: number };
  /** HTTP attempts, those that were retries, and attempts the throttle refused locally (not sent). */
  requests: number;
  retries: number;
  throttled: number;
}

/** What `close()` resolves with. */
export interface CloseResult {
  readonly delivered: number;
  /** Events still undelivered at the deadline, reported through `onError` as `client_closed`. */
  readonly undelivered: number;
}

/** The client `createClient` returns. */
export interface FloodgateClient {
  /** Queues an event (priority defaults to the client's); returns its idempotency key. Never blocks, never throws for the server's sake. */
  track(event: TrackEvent, options?: { priority?: Priority }): string;
  /** Sends everything tracked so far without waiting for batches to fill; resolves once each of those events is settled. */
  flush(): Promise<void>;
  /** Stops taking events and delivers what it holds within `timeoutMs` (default 10 s); what is left is reported. Idempotent. */
  close(options?: { timeoutMs?: number }): Promise<CloseResult>;
  stats(): ClientStats;
}

interface Batch {
  readonly events: QueuedEvent[];
  /** Sends made so far. */
  attempts: number;
  settled: boolean;
}

interface Lane {
  readonly priority: Priority;
  batch: Batch | null;
  state: 'idle' | 'waiting' | 'backoff' | 'sending';
  timer: unknown;
  /** Grows with every failure and local refusal, back to 0 when the server answers: the backoff exponent. */
  level: number;
  readonly throttle: Throttle | null;
  /** flush() asked for the events up to this seq to go without waiting for their batch to fill. */
  urgentThrough: number;
  /** The throttle refused the lane's current attempt: asking again does not count as a new request. */
  heldBack: boolean;
  /** How long the batch starting with event `seq` waits to fill, drawn once for it (see `flushJitter`). */
  fill: { seq: number; ms: number };
}

/** Creates a client; throws a TypeError listing every invalid option. */
export function createClient(options: ClientOptions): FloodgateClient {
  const o = resolveOptions(options);
  const queue = createEventQueue({ maxEvents: o.maxQueueEvents, maxBytes: o.maxQueueBytes });
  const abort = new AbortController();
  const stats: ClientStats = {
    tracked: 0,
    delivered: 0,
    rejected: 0,
    refused: 0,
    exhausted: 0,
    dropped: { critical: 0, normal: 0, low: 0 },
    tooLarge: 0,
    closed: 0,
    held: queue.held,
    requests: 0,
    retries: 0,
    throttled: 0,
  };
  const lanes = new Map<Priority, Lane>(
    PRIORITIES.map((priority) => [
      priority,
      {
        priority,
        batch: null,
        state: 'idle',
        timer: null,
        level: 0,
        urgentThrough: -1,
        heldBack: false,
        fill: { seq: -1, ms: o.flushIntervalMs },
        throttle: o.throttle ? createThrottle({ ...o.throttle, now: o.now, random: o.random }) : null,
      },
    ]),
  );
  const lastSeq: Record<Priority, number> = { critical: -1, normal: -1, low: -1 };
  const waiters: Array<{ targets: Record<Priority, number>; resolve: () => void }> = [];
  let seq = 0;
  let closing = false;
  let hardClosed = false;
  let closed: Promise<CloseResult> | undefined;
  let hold: ReturnType<typeof setInterval> | undefined;

  /** A user callback must not break the client: its exception becomes a process warning. */
  const call = <T>(fn: ((arg: T) => void) | undefined, arg: T) => {
    try {
      fn?.(arg);
    } catch (err) {
      process.emitWarning(err as Error, { code: 'FLOODGATE_CALLBACK' });
    }
  };
  const fail = (
    code: ErrorCode,
    events: readonly QueuedEvent[],
    detail: { status?: number | null; reason?: string | null; message?: string; errors?: Map<number, readonly FieldError[]> } = {},
  ) => {
    if (events.length === 0) return;
    const failed: FailedEvent[] = events.map((e, i) => ({
      key: e.key,
      priority: e.priority,
      event: e.event,
      ...(detail.errors?.has(i) ? { errors: detail.errors.get(i)! } : {}),
    }));
    call(o.onError, new FloodgateError(code, failed, detail));
  };

  const lowestUnsettled = (p: Priority) => Math.min(lanes.get(p)!.batch?.events[0]?.seq ?? Infinity, queue.peek(p)?.seq ?? Infinity);
  const checkWaiters = () => {
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i]!;
      if (PRIORITIES.every((p) => lowestUnsettled(p) > w.targets[p])) {
        waiters.splice(i, 1);
        w.resolve();
      }
    }
    if (waiters.length === 0 && hold) hold = void clearInterval(hold);
  };

  const setTimer = (lane: Lane, ms: number, state: 'waiting' | 'backoff') => {
    lane.state = state;
    lane.timer = o.timers.setTimeout(() => {
      lane.timer = null;
      lane.state = 'idle';
      pump(lane);
    }, ms);
  };
  const clearTimer = (lane: Lane) => {
    if (lane.timer !== null) o.timers.clearTimeout(lane.timer);
    lane.timer = null;
    if (lane.state === 'waiting' || lane.state === 'backoff') lane.state = 'idle';
  };

  /**
   * The wait of the batch whose first event is `seq`: a part of flushIntervalMs drawn once per batch. Lanes of
   * clients started together would otherwise send in step, each second, for as long as they run: a burst the
   * server has to queue whatever its capacity, which its latency target reads as overload.
   */
  function fillWait(lane: Lane, seq: number): number {
    if (lane.fill.seq !== seq) {
      const jitter = o.flushIntervalMs > 0 && o.flushJitter > 0 ? o.flushJitter * o.random() : 0;
      lane.fill = { seq, ms: o.flushIntervalMs * (1 - jitter) };
    }
    return lane.fill.ms;
  }

  /** Starts the lane's next step if it is free: wait for a batch to fill, form one, ask the throttle, send. */
  function pump(lane: Lane): void {
    if (hardClosed || lane.state === 'sending' || lane.state === 'backoff') return;
    const p = lane.priority;
    if (!lane.batch) {
      const head = queue.peek(p);
      if (!head) return clearTimer(lane);
      const waiting = queue.waiting(p);
      const fillMs = fillWait(lane, head.seq);
      const due =
        closing ||
        head.seq <= lane.urgentThrough ||
        waiting.events >= o.flushAt ||
        waiting.bytes >= o.flushBytes ||
        o.now() - head.trackedAt >= fillMs;
      if (!due) {
        if (lane.state !== 'waiting') setTimer(lane, Math.max(0, head.trackedAt + fillMs - o.now()), 'waiting');
        return;
      }
      clearTimer(lane);
      lane.batch = { events: queue.take(p, o.flushAt, o.flushBytes), attempts: 0, settled: false };
    }
    if (lane.throttle && !lane.throttle.allow(lane.heldBack)) {
      stats.throttled++;
      lane.heldBack = true;
      // Held back, the batch asks again after the lane's current backoff; only the server's answers grow it.
      return setTimer(lane, retryDelayMs(lane.level, o, o.random), 'backoff');
    }
    lane.heldBack = false;
    send(lane, lane.batch);
  }

  function send(lane: Lane, batch: Batch): void {
    lane.state = 'sending';
    const attempt = batch.attempts++;
    stats.requests++;
    if (attempt > 0) stats.retries++;
    const started = o.now();
    const attemptOf = {
      url: o.url,
      key: o.key,
      priority: lane.priority,
      gzipAboveBytes: o.gzipAboveBytes,
      timeoutMs: o.requestTimeoutMs,
      signal: abort.signal,
      now: o.now,
      fetch: o.fetch,
    };
    // sendBatch turns every network failure into an outcome; anything else thrown (a failed gzip) is retried too.
    const attempted = sendBatch({ ...attemptOf, eventsJson: batch.events.map((e) => e.json) }).catch(
      (err: unknown): Awaited<ReturnType<typeof sendBatch>> => ({
        kind: 'transient',
        status: null,
        reason: `client_error: ${(err as Error)?.message}`,
        retryAfterMs: null,
        bytes: 0,
        gzip: false,
      }),
    );
    void attempted.then((outcome) => {
      if (batch.settled) return; // close() gave these events up at its deadline
      lane.state = 'idle';
      const retryInMs = settle(lane, batch, attempt, outcome);
      const errorCode = outcome.kind === 'accepted' ? null : outcome.reason;
      call(o.onRequest, {
        priority: lane.priority,
        events: batch.events.length,
        bytes: outcome.bytes,
        gzip: outcome.gzip,
        status: outcome.status,
        outcome: outcome.kind,
        errorCode,
        durationMs: o.now() - started,
        attempt,
        retryInMs,
      });
      if (retryInMs === null) pump(lane);
      else setTimer(lane, retryInMs, 'backoff');
    });
  }

  /** Applies an attempt's outcome to its batch; returns the wait before retrying it, or null when it is settled. */
  function settle(lane: Lane, batch: Batch, attempt: number, outcome: Outcome): number | null {
    const finish = () => {
      batch.settled = true;
      lane.batch = null;
      queue.release(batch.events);
    };
    if (outcome.kind === 'transient') {
      if (attempt < o.maxRetries && !hardClosed) return retryDelayMs(lane.level++, o, o.random, outcome.retryAfterMs);
      finish();
      stats.exhausted += batch.events.length;
      fail('retries_exhausted', batch.events, { status: outcome.status, reason: outcome.reason, message: `after ${attempt + 1} attempts` });
      checkWaiters();
      return null;
    }
    // The server answered: the throttle counts it as accepted, whatever it said about the events.
    lane.throttle?.accepted();
    lane.level = 0;
    finish();
    const invalid = new Map(outcome.rejected.map((r) => [r.index, r.errors] as const));
    if (outcome.kind === 'refused' && invalid.size === 0) {
      stats.refused += batch.events.length;
      fail('batch_refused', batch.events, { status: outcome.status, reason: outcome.reason, message: outcome.message });
    } else {
      const indexes = [...invalid.keys()].filter((i) => i >= 0 && i < batch.events.length).sort((a, b) => a - b);
      const rejected = indexes.map((i) => batch.events[i]!);
      stats.rejected += rejected.length;
      const errors = new Map(indexes.map((index, i) => [i, invalid.get(index)!] as const));
      fail('event_rejected', rejected, {
        status: outcome.status,
        reason: outcome.kind === 'refused' ? outcome.reason : 'invalid_event',
        errors,
      });
      if (outcome.kind === 'accepted') {
        const deliveredAt = o.now();
        let next = 0;
        const delivered: DeliveredEvent[] = batch.events.flatMap((e, i) =>
          invalid.has(i)
            ? []
            : [{ key: e.key, priority: e.priority, event: e.event, trackedAt: e.trackedAt, deliveredAt, id: outcome.ids[next++] ?? null }],
        );
        stats.delivered += delivered.length;
        if (delivered.length > 0) call(o.onDelivered, delivered);
      }
    }
    checkWaiters();
    return null;
  }

  /** Serialises an event for the wire, with its key and a timestamp from this machine's clock unless given. */
  function wireJson(event: TrackEvent, key: string): string {
    const t = event.timestamp;
    const timestamp =
      t === undefined ? new Date(o.now()).toISOString() : t instanceof Date || typeof t === 'number' ? new Date(t).toISOString() : t;
    return JSON.stringify({
      type: event.type,
      timestamp,
      source: event.source,
      value: event.value,
      data: event.data,
      idempotency_key: key,
    });
  }

  /** Settles every held event as `client_closed`; in-flight answers that arrive later are ignored. */
  function giveUp(): number {
    hardClosed = true;
    abort.abort(new DOMException('the client closed', 'AbortError'));
    const left: QueuedEvent[] = [];
    for (const lane of lanes.values()) {
      clearTimer(lane);
      if (lane.batch) {
        lane.batch.settled = true;
        queue.release(lane.batch.events);
        left.push(...lane.batch.events);
        lane.batch = null;
      }
      left.push(...queue.drain(lane.priority));
    }
    stats.closed += left.length;
    fail('client_closed', left, { message: 'close() reached its deadline' });
    checkWaiters();
    return left.length;
  }

  function flush(): Promise<void> {
    const targets = { ...lastSeq };
    for (const lane of lanes.values()) {
      lane.urgentThrough = Math.max(lane.urgentThrough, targets[lane.priority]);
      pump(lane);
    }
    return new Promise<void>((resolve) => {
      waiters.push({ targets, resolve });
      // An awaited flush keeps the process alive whatever timers the client was given.
      hold ??= setInterval(() => {}, 1 << 30);
      checkWaiters();
    });
  }

  return {
    track(event, options) {
      if (typeof event !== 'object' || event === null || typeof event.type !== 'string' || event.type.length === 0) {
        throw new TypeError('track needs an event object with a non-empty string `type`');
      }
      const priority = options?.priority ?? o.priority;
      if (!isPriority(priority)) throw new TypeError(`priority must be critical, normal or low, got "${String(priority)}"`);
      const key = event.idempotency_key ?? randomUUID();
      const json = wireJson(event, key);
      const queued: QueuedEvent = { seq: seq++, key, priority, event, json, bytes: Buffer.byteLength(json), trackedAt: o.now() };
      stats.tracked++;
      if (closing) {
        stats.closed++;
        fail('client_closed', [queued], { message: 'tracked after close()' });
        return key;
      }
      if (queued.bytes > o.flushBytes) {
        stats.tooLarge++;
        fail('event_too_large', [queued], { message: `${queued.bytes} bytes > flushBytes ${o.flushBytes}` });
        return key;
      }
      const dropped = queue.push(queued);
      if (dropped.length > 0) {
        for (const d of dropped) stats.dropped[d.priority]++;
        fail('queue_full', dropped, { message: `limits ${o.maxQueueEvents} events, ${o.maxQueueBytes} bytes` });
        checkWaiters();
      }
      if (dropped.at(-1) !== queued) lastSeq[priority] = queued.seq;
      pump(lanes.get(priority)!);
      return key;
    },

    flush,

    close({ timeoutMs = 10_000 } = {}) {
      closed ??= (async () => {
        const flushed = flush();
        closing = true;
        for (const lane of lanes.values()) pump(lane);
        let deadline: ReturnType<typeof setTimeout> | undefined;
        const timedOut = await Promise.race([
          flushed.then(() => false),
          new Promise<boolean>((r) => (deadline = setTimeout(() => r(true), timeoutMs))),
        ]);
        clearTimeout(deadline);
        const undelivered = timedOut ? giveUp() : 0;
        hardClosed = true;
        return { delivered: stats.delivered, undelivered };
      })();
      return closed;
    },

    stats: () => ({ ...stats, dropped: { ...stats.dropped }, held: { ...queue.held } }),
  };
}
