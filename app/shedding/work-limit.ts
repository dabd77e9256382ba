import type { Priority } from '../../lib/event-schema.js';

/** The smallest the limit goes: a few requests keep the non-critical classes moving whatever the pressure. */
export const MIN_LIMIT = 4;
/** Multiplicative decrease while critical traffic is over its target… */
const DECREASE = 0.75;
/** …at most once per this many ms, so that the latency window (which lags) sees one cut before the next. */
const DECREASE_EVERY_MS = 500;
/** Additive-proportional increase per tick while critical traffic is comfortably within its target. */
const INCREASE = 0.05;
/** Critical pressure below which the limit may grow (the gap to 1 is the hysteresis). */
const GROW_BELOW = 0.8;
/** How often waiters past the queue timeout are refused. */
const SWEEP_MS = 50;

/** What GET /v1/admin/load shows of the limit. */
export interface WorkLimitState {
  readonly enabled: boolean;
  /** Normal and low requests allowed in flight now. */
  readonly limit: number;
  readonly maxLimit: number;
  /** Normal and low requests holding a slot now. */
  readonly inFlight: number;
  /** Requests waiting for a slot, per class. */
  readonly queued: { readonly normal: number; readonly low: number };
  readonly queueTimeoutMs: number;
}

/** A waiting request: granted (true) or refused (false) exactly once. */
interface Waiter {
  readonly at: number;
  settle(granted: boolean): void;
}

/** A stack that also expires from its bottom: newest served first, oldest timed out first. */
interface WaitQueue {
  items: (Waiter | undefined)[];
  head: number;
}

/**
 * The adaptive limit on normal and low requests in flight (critical ones never wait). Shedding decides how much
 * traffic is refused; this decides how much of the admitted non-critical traffic is worked on at once. A Node
 * process serves every request it has accepted in the same event loop and through the same Redis connection, so
 * a critical request waits behind whatever low work is in flight: under a flood, one loop turn holding hundreds of
 * low requests. Past the limit a request waits before its body is read (it costs a socket, no CPU), normal before
 * low, newest first (a request waiting longest is the likeliest to be given up by its client, and is refused when
 * it has waited `queueTimeoutMs`). A closed-loop client that waits sends nothing more, so holding a flood back
 * also slows it down, where refusing it would make it come straight back.
 *
 * The limit is AIMD on the critical class's pressure (its p99 over its own target, from the controller): cut by a
 * quarter while critical traffic is over target and the limit is in use (at most every 500 ms), raised by 5 % (at
 * least one) per tick while critical is comfortably within it and the limit is in use, between MIN_LIMIT and
 * `maxLimit`. A limit nobody reaches is left alone: it is not what slows critical down. Without critical traffic
 * there is nothing to protect and the limit grows.
 */
export interface WorkLimit {
  /** A slot for a request of this class: true at once, a promise when it has to wait (false: refused). */
  acquire(priority: Priority): boolean | Promise<boolean>;
  /** Whether a request of this class would have to wait for a slot now (false when the limit is off, or for critical). */
  wouldWait(priority: Priority): boolean;
  /** Counts a non-critical request against the limit without making it wait (one whose body arrived late). */
  enter(priority: Priority): void;
  /** Gives back the slot a granted (or entered) non-critical request held. */
  release(priority: Priority): void;
  /** One step of the limit from the critical class's pressure (0: no trusted critical samples). */
  update(criticalPressure: number): void;
  state(): WorkLimitState;
  close(): void;
}

/** Creates the limit; `maxLimit` 0 turns it off (every request gets a slot at once). */
export function createWorkLimit(options: { maxLimit: number; queueTimeoutMs: number; maxQueued: number; now?: () => number }): WorkLimit {
  const { maxLimit, queueTimeoutMs, maxQueued } = options;
  const now = options.now ?? (() => performance.now());
  const enabled = maxLimit > 0;
  let limit = maxLimit;
  let inFlight = 0;
  let queuedCount = 0;
  let used = false;
  let lastDecrease = -Infinity;
  const queues: Record<'normal' | 'low', WaitQueue> = { normal: { items: [], head: 0 }, low: { items: [], head: 0 } };

  const pop = (q: WaitQueue): Waiter | undefined => {
    while (q.items.length > q.head) {
      const w = q.items.pop();
      if (w) return w;
    }
    q.items.length = q.head = 0;
    return undefined;
  };

  /** Grants waiting requests while there is room: normal first, each class newest first. */
  function drain(): void {
    while (inFlight < Math.floor(limit) && queuedCount > 0) {
      const w = pop(queues.normal) ?? pop(queues.low);
      if (!w) return;
      queuedCount--;
      inFlight++;
      w.settle(true);
    }
  }

  /** Refuses the waiters past the queue timeout, oldest first. */
  function sweep(): void {
    const cutoff = now() - queueTimeoutMs;
    for (const q of Object.values(queues)) {
      while (q.head < q.items.length) {
        const w = q.items[q.head];
        if (w && w.at > cutoff) break;
        q.items[q.head++] = undefined;
        if (!w) continue;
        queuedCount--;
        w.settle(false);
      }
      // Compact once the expired bottom is most of the array.
      if (q.head > 1024 && q.head * 2 > q.items.length) {
        q.items = q.items.slice(q.head);
        q.head = 0;
      }
    }
  }

  const sweeper = enabled ? setInterval(sweep, SWEEP_MS) : undefined;
  sweeper?.unref();

  /** Whether a slot is free for this class now: normal waits behind waiting normal requests only, low behind every waiter. */
  function free(priority: 'normal' | 'low'): boolean {
    const ahead = priority === 'normal' ? queues.normal.items.length - queues.normal.head : queuedCount;
    return inFlight < Math.floor(limit) && ahead === 0;
  }

  return {
    wouldWait(priority) {
      return enabled && priority !== 'critical' && !free(priority);
    },
    acquire(priority) {
      if (!enabled || priority === 'critical') return true;
      if (free(priority)) {
        inFlight++;
        return true;
      }
      used = true;
      if (queuedCount >= maxQueued) return false;
      queuedCount++;
      return new Promise<boolean>((resolve) => {
        queues[priority].items.push({ at: now(), settle: resolve });
      });
    },
    enter(priority) {
      if (enabled && priority !== 'critical') inFlight++;
    },
    release(priority) {
      if (!enabled || priority === 'critical') return;
      inFlight--;
      drain();
    },
    update(criticalPressure) {
      if (!enabled) return;
      if (inFlight >= Math.floor(limit)) used = true;
      const t = now();
      // Cut only a limit that is holding requests back: when normal and low work is not using it, it is not what
      // keeps critical over its target (another process taking the machine's CPU, a slow Redis), and cutting it
      // would only throttle them for nothing.
      if (criticalPressure > 1) {
        if (used && t - lastDecrease >= DECREASE_EVERY_MS) {
          limit = Math.max(MIN_LIMIT, limit * DECREASE);
          lastDecrease = t;
        }
      } else if (criticalPressure < GROW_BELOW && used) {
        limit = Math.min(maxLimit, limit + Math.max(1, limit * INCREASE));
      }
      used = false;
      drain();
    },
    state() {
      return {
        enabled,
        limit: Math.floor(limit),
        maxLimit,
        inFlight,
        queued: {
          normal: queues.normal.items.length - queues.normal.head,
          low: queues.low.items.length - queues.low.head,
        },
        queueTimeoutMs,
      };
    },
    close() {
      if (sweeper) clearInterval(sweeper);
      for (const q of Object.values(queues)) {
        for (let w = pop(q); w; w = pop(q)) w.settle(false);
      }
      queuedCount = 0;
    },
  };
}
