// Reproducible, realistic event bodies for load tests: a seeded PRNG picks types, sources and data sizes.

const TYPES = ['page.view', 'button.click', 'checkout.started', 'checkout.completed', 'signup', 'search', 'video.play', 'api.call'];
const SOURCES = ['web', 'ios', 'android', 'backend', 'batch-import'];

/** mulberry32: a tiny seeded PRNG, so the same seed sends the same events. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface GeneratedEvent {
  type: string;
  source: string;
  value?: number;
  idempotency_key?: string;
  data: Record<string, unknown>;
}

/** One event; `data` is 0-3 small fields, sometimes a longer text, like real product analytics. */
export function generateEvent(random: () => number, sequence: number, keyPrefix?: string): GeneratedEvent {
  const event: GeneratedEvent = {
    type: TYPES[Math.floor(random() * TYPES.length)]!,
    source: SOURCES[Math.floor(random() * SOURCES.length)]!,
    data: { user: `u${Math.floor(random() * 100_000)}`, seq: sequence },
  };
  if (random() < 0.5) event.value = Math.round(random() * 10_000) / 100;
  if (random() < 0.3) event.data.path = `/products/${Math.floor(random() * 5000)}?ref=${random().toString(36).slice(2, 8)}`;
  if (random() < 0.1) event.data.note = 'lorem ipsum '.repeat(1 + Math.floor(random() * 40));
  if (keyPrefix) event.idempotency_key = `${keyPrefix}-${sequence}`;
  return event;
}

/** One request body and the run-wide sequence numbers of the events it carries. */
export interface RequestBody {
  readonly body: string;
  readonly seqs: readonly number[];
  /** True when this body was sent before (a retry in the duplicates scenario). */
  readonly retry: boolean;
}

export interface EventSourceOptions {
  readonly seed: number;
  /** Stamped in every event's `data.run`, so the integrity check finds this run's rows. */
  readonly runId: string;
  /** Events per request: 1 sends a single event object, more a `{"events": [...]}` batch. */
  readonly batchSize: number;
  /** Give every event an idempotency key `<runId>-<seq>`. */
  readonly idempotencyKeys?: boolean;
  /** Share of requests that re-send a recent body unchanged (same keys): a client retry storm. */
  readonly retryShare?: number;
}

/** Bodies for one run; `data.seq` is unique per event in the run, and the content of event `seq` depends only on the seed. */
export interface EventSource {
  next(): RequestBody;
  /** Events generated so far (retries not counted). */
  readonly events: number;
}

const RECENT = 1000;

/** A reproducible stream of request bodies: event `seq` of a seed is always the same event, whatever the interleaving. */
export function createEventSource(options: EventSourceOptions): EventSource {
  const retries = seededRandom(options.seed ^ 0x5eed);
  const recent: RequestBody[] = [];
  let seq = 0;
  const makeEvent = (n: number) => {
    const random = seededRandom(Math.imul(options.seed, 1_000_003) + n);
    const event = generateEvent(random, n, options.idempotencyKeys ? options.runId : undefined);
    // One event in fifty carries a larger payload (a cart of line items, ~1-8 KB), as real traffic does.
    if (random() < 0.02)
      event.data.items = Array.from({ length: 10 + Math.floor(random() * 90) }, (_, i) => ({
        sku: `sku-${i}-${Math.floor(random() * 1e6)}`,
        qty: 1 + Math.floor(random() * 3),
      }));
    event.data.run = options.runId;
    return event;
  };
  return {
    get events() {
      return seq;
    },
    next() {
      if (options.retryShare && recent.length > 0 && retries() < options.retryShare) {
        const again = recent[Math.floor(retries() * recent.length)]!;
        return { ...again, retry: true };
      }
      const seqs = Array.from({ length: options.batchSize }, () => seq++);
      const events = seqs.map(makeEvent);
      const body = JSON.stringify(options.batchSize === 1 ? events[0] : { events });
      const made = { body, seqs, retry: false };
      if (options.retryShare) {
        if (recent.length < RECENT) recent.push(made);
        else recent[seqs[0]! % RECENT] = made;
      }
      return made;
    },
  };
}

/** `n` bodies of `source`, sent in turn: for benchmarks, where generating every body would load the client more than the target. */
export function cyclingSource(source: EventSource, n: number): EventSource {
  const bodies = Array.from({ length: n }, () => source.next());
  let i = 0;
  return {
    get events() {
      return source.events;
    },
    next: () => bodies[i++ % n]!,
  };
}
