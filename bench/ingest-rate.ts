// Ingest at a fixed rate, the load the live and analytics benchmarks run their readers against.

const TICK_MS = 50;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Posts `rate` events/s for `seconds` (or until `signal` aborts) in batches every 50 ms; returns how many were
 * accepted and refused.
 */
export async function ingest(
  url: string,
  key: string,
  rate: number,
  seconds: number,
  tag: string,
  signal?: AbortSignal,
): Promise<{ sent: number; refused: number }> {
  const perTick = Math.max(1, Math.round((rate * TICK_MS) / 1000));
  const ticks = Math.round((seconds * 1000) / TICK_MS);
  const pad = 'x'.repeat(100);
  let sent = 0;
  let refused = 0;
  let n = 0;
  const inFlight = new Set<Promise<void>>();
  const started = performance.now();
  for (let t = 0; t < ticks && !signal?.aborted; t++) {
    const events = Array.from({ length: perTick }, (_, i) => ({ type: `bench.${(n + i) % 5}`, value: i, data: { tag, n: n + i, pad } }));
    n += perTick;
    // A refusal (503 on a machine too busy for Redis to answer in time) is counted, not retried: the figures
    // are per accepted event.
    const p: Promise<void> = fetch(`${url}/v1/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ events }),
    })
      .then(async (res) => {
        await res.arrayBuffer();
        if (res.status === 202) sent += perTick;
        else refused += perTick;
      })
      .catch(() => {
        refused += perTick;
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
    const due = started + (t + 1) * TICK_MS;
    await sleep(Math.max(0, due - performance.now()));
  }
  await Promise.all(inFlight);
  return { sent, refused };
}
