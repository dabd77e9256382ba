import { isBreakerRejection, BREAKER_CODE, type Breaker } from '../lib/breaker.js';
import type { FastHistogram } from '../lib/fast-metrics.js';

/** Runs one queue write through its breaker, timing it into `duration` by outcome (ok or error). */
export async function guardedWrite<T>(breaker: Breaker, duration: FastHistogram<'outcome'>, write: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    const result = await breaker.fire(write);
    duration.observe({ outcome: 'ok' }, (performance.now() - started) / 1000);
    return result;
  } catch (err) {
    // A call the open breaker refused never reached the queue: it has no write latency to report.
    const tried = !isBreakerRejection(err) || (err as { code?: string }).code === BREAKER_CODE.timeout;
    if (tried) duration.observe({ outcome: 'error' }, (performance.now() - started) / 1000);
    throw err;
  }
}
