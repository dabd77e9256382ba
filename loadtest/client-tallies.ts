// What the client model counts: per second and per phase, per class — tracked, delivered, dropped, failed,
// delivery latency and the HTTP answers — and what became of the events tracked in each phase.
import { PRIORITIES, type Priority } from '../lib/event-schema.js';
import { createHistogram, type Histogram, type Percentiles } from './histogram.js';

export type ByClass = Record<Priority, number>;
/** Zero per class. */
export const byClass = (): ByClass => ({ critical: 0, normal: 0, low: 0 });

/** One second of the run, from the clients' side. */
export interface ClientSecond {
  t: number;
  phase: string;
  offeredPerSec: number;
  tracked: ByClass;
  delivered: ByClass;
  dropped: ByClass;
  /** Given up for another reason (retries exhausted, refused, rejected). */
  failed: number;
  /** Delivery latency (track → accepting answer) of the events delivered this second, per class, ms. */
  latency: Record<Priority, Percentiles>;
  requests: number;
  accepted: number;
  /** 503 answers (overloaded, dependency_unavailable), 429 answers, and attempts with no answer. */
  shed: number;
  rateLimited: number;
  errors: number;
  /** Attempts the clients' throttles held back. */
  throttled: number;
  /** Events held by all clients (waiting or in flight) at the end of the second. */
  held: number;
}

/** What became of the events tracked during one phase, per class. */
export interface PhaseFate {
  tracked: number;
  delivered: number;
  /** Delivered within 10 s of `track`. */
  within10s: number;
  dropped: number;
  failed: number;
  latency: Percentiles;
}

/** One phase's totals. */
export interface ClientPhaseResult {
  label: string;
  seconds: number;
  offeredPerSec: number;
  /** Events tracked per second (below the offer when the generator could not keep up). */
  trackedPerSec: number;
  /** Events delivered per second during the phase (whenever they were tracked). */
  deliveredPerSec: number;
  requests: number;
  shed: number;
  rateLimited: number;
  errors: number;
  throttled: number;
  /** Delivery latency of the events delivered during the phase, all classes, ms. */
  latency: Percentiles;
  /** Events the clients held (waiting or in flight) when the phase began and when it ended. */
  heldAtStart: number;
  heldAtEnd: number;
  /** Fate of the events tracked in this phase, per class, as of the end of the run. */
  fate: Record<Priority, PhaseFate>;
}

/** Running counts of a second or a phase. */
export interface Tallies {
  tracked: ByClass;
  delivered: ByClass;
  dropped: ByClass;
  failed: number;
  latency: Record<Priority, Histogram>;
  requests: number;
  accepted: number;
  shed: number;
  rateLimited: number;
  errors: number;
  throttled: number;
}
/** Empty running counts. */
export const tallies = (): Tallies => ({
  tracked: byClass(),
  delivered: byClass(),
  dropped: byClass(),
  failed: 0,
  latency: { critical: createHistogram(), normal: createHistogram(), low: createHistogram() },
  requests: 0,
  accepted: 0,
  shed: 0,
  rateLimited: 0,
  errors: 0,
  throttled: 0,
});
/** Empty fates of one phase's events, per class. */
export const fateTallies = () =>
  Object.fromEntries(
    PRIORITIES.map((p) => [p, { tracked: 0, delivered: 0, within10s: 0, dropped: 0, failed: 0, latency: createHistogram() }]),
  ) as Record<Priority, Omit<PhaseFate, 'latency'> & { latency: Histogram }>;

/** Delivery latency percentiles over every class. */
export function mergedPercentiles(t: Tallies): Percentiles {
  const all = createHistogram();
  for (const p of PRIORITIES) all.add(t.latency[p]);
  return all.percentiles();
}

/** A phase's fates with their latency histograms as percentiles. */
export const fateOf = (f: ReturnType<typeof fateTallies>) =>
  Object.fromEntries(PRIORITIES.map((p) => [p, { ...f[p], latency: f[p].latency.percentiles() }])) as Record<Priority, PhaseFate>;
