/**
 * Identical questions asked at once share one read. Each key (one tenant's normalised question) has at most one
 * read running and one queued: a request arriving while a read runs joins the queued one, which starts when the
 * running one ends. So every answer is read after its request arrived (it reflects every commit before the
 * request), and however many identical requests arrive, at most one read per key runs at a time, at most two
 * exist.
 *
 * With `reuseMs` > 0, an answer whose read started at most that long before a request arrived is handed out
 * again without reading: the one case where an answer may miss commits, those of its last `reuseMs`.
 */
export interface Flights<T> {
  /** The answer of `key`: a shared read (running or queued), a reused answer, or `load()` run now. */
  get(key: string, load: () => Promise<T>): Promise<T>;
  /** Reads running or queued, and answers kept for reuse (for tests and metrics). */
  size(): { flights: number; kept: number };
}

interface Flight<T> {
  running: Promise<T> | null;
  queued: Promise<T> | null;
}

/** Most answers kept for reuse per process; past it the oldest go first. */
const MAX_KEPT = 256;

export function createFlights<T>(options: { reuseMs: number; now?: () => number }): Flights<T> {
  const now = options.now ?? (() => performance.now());
  const flights = new Map<string, Flight<T>>();
  const kept = new Map<string, { readAt: number; value: T }>();

  function keep(key: string, readAt: number, value: T) {
    kept.delete(key);
    kept.set(key, { readAt, value });
    if (kept.size > MAX_KEPT) {
      const horizon = now() - options.reuseMs;
      for (const [k, entry] of kept) if (entry.readAt < horizon || kept.size > MAX_KEPT) kept.delete(k);
    }
  }

  function run(key: string, flight: Flight<T>, load: () => Promise<T>): Promise<T> {
    const readAt = now();
    const promise = load().then((value) => {
      if (options.reuseMs > 0) keep(key, readAt, value);
      return value;
    });
    flight.running = promise;
    const done = () => {
      if (flight.running === promise) flight.running = null;
      if (!flight.running && !flight.queued && flights.get(key) === flight) flights.delete(key);
    };
    promise.then(done, done);
    return promise;
  }

  return {
    get(key, load) {
      if (options.reuseMs > 0) {
        const entry = kept.get(key);
        if (entry && now() - entry.readAt <= options.reuseMs) return Promise.resolve(entry.value);
      }
      let flight = flights.get(key);
      if (!flight) flights.set(key, (flight = { running: null, queued: null }));
      const { running } = flight;
      if (!running) return run(key, flight, load);
      if (flight.queued) return flight.queued;
      const f = flight;
      const after = () => {
        f.queued = null;
        return run(key, f, load);
      };
      return (f.queued = running.then(after, after));
    },
    size: () => ({ flights: flights.size, kept: kept.size }),
  };
}
