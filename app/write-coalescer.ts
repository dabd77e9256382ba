/**
 * Lets concurrent requests share one write to Redis. ioredis's auto-pipelining already joins the commands issued
 * in one tick of the event loop, but requests arriving a fraction of a millisecond apart are each in a tick of
 * their own, and each then pays a socket write (a system call that on a local Redis also runs Redis's receive
 * path): the largest single cost of an ingest request in the profile (docs/benchmarks.md).
 *
 * So while requests arrive closer together than `windowMs`, a request's command waits up to `windowMs` (or until
 * `maxBatch` wait) and all that waited are issued in one tick, which auto-pipelining sends as one write. Each
 * command is still its own command with its own reply: a request is answered once its own entry is in Redis,
 * and one command failing fails no other. A request arriving after a quiet spell of `windowMs` is issued at
 * once, so coalescing costs latency only under load, where it saves CPU.
 */
export interface WriteCoalescer {
  /**
   * Runs `command` now or with the next batch; resolves or rejects as `command` does. An `urgent` command (a
   * critical request's) never waits: it is issued at once, and the commands held so far go with it in the same
   * write, which they would otherwise have waited for.
   */
  run<T>(command: () => Promise<T>, urgent?: boolean): Promise<T>;
}

interface Held {
  readonly command: () => Promise<unknown>;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: unknown) => void;
}

/** A coalescer holding commands for up to `windowMs`; 0 turns it off (every command runs at once). */
export function createWriteCoalescer(windowMs: number, maxBatch = 64): WriteCoalescer {
  if (windowMs <= 0) return { run: (command) => command() };
  let held: Held[] = [];
  let timer: NodeJS.Timeout | undefined;
  let lastArrival = -Infinity;

  function flush(): void {
    clearTimeout(timer);
    timer = undefined;
    const batch = held;
    held = [];
    // One tick: auto-pipelining sends every one of them in a single write.
    for (const { command, resolve, reject } of batch) {
      try {
        command().then(resolve, reject);
      } catch (err) {
        reject(err);
      }
    }
  }

  return {
    run<T>(command: () => Promise<T>, urgent = false): Promise<T> {
      const now = performance.now();
      const quiet = now - lastArrival >= windowMs;
      lastArrival = now;
      if (urgent) {
        const issued = command();
        if (held.length > 0) flush();
        return issued;
      }
      if (quiet && held.length === 0) return command();
      return new Promise<T>((resolve, reject) => {
        held.push({ command, resolve: resolve as (value: unknown) => void, reject });
        if (held.length >= maxBatch) flush();
        else timer ??= setTimeout(flush, windowMs);
      });
    },
  };
}
