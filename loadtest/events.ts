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
