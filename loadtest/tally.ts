// What the load runner counts per class, per tenant and in total: answers by status, shed and rate-limited
// answers, timeouts, and latency histograms; rendered as rates and percentiles for reports.
import { createHistogram, type Histogram, type Percentiles } from './histogram.js';

/** Counts of what one class (or all) got in one second or one segment. */
export interface Counts {
  requests: number;
  /** 2xx answers. */
  ok: number;
  /** Events acknowledged (ids returned in 2xx answers). */
  events: number;
  /** 503 overloaded answers. */
  shed: number;
  /** 429 rate_limited answers. */
  rateLimited: number;
  errors: number;
  timeouts: number;
  status: Record<string, number>;
}

/** Counts plus latency histograms, while a run goes. */
export interface Tally extends Counts {
  /** Latency of every answer. */
  readonly latency: Histogram;
  /** Latency of 2xx answers only. */
  readonly okLatency: Histogram;
}

/** A tally rendered for reports: counts, rates over `seconds`, percentiles in ms. */
export interface TallySummary extends Counts {
  requestsPerSec: number;
  okPerSec: number;
  eventsPerSec: number;
  /** Shed answers as a share of answers, in %. */
  shedPct: number;
  latency: Percentiles;
  okLatency: Percentiles;
}

/** An empty tally. */
export function createTally(): Tally {
  return {
    requests: 0,
    ok: 0,
    events: 0,
    shed: 0,
    rateLimited: 0,
    errors: 0,
    timeouts: 0,
    status: {},
    latency: createHistogram(),
    okLatency: createHistogram(),
  };
}

/** Adds `from` into `into`. */
export function addTally(into: Tally, from: Tally): void {
  into.requests += from.requests;
  into.ok += from.ok;
  into.events += from.events;
  into.shed += from.shed;
  into.rateLimited += from.rateLimited;
  into.errors += from.errors;
  into.timeouts += from.timeouts;
  for (const [code, n] of Object.entries(from.status)) into.status[code] = (into.status[code] ?? 0) + n;
  into.latency.add(from.latency);
  into.okLatency.add(from.okLatency);
}

/** `n` rounded to `digits` decimals. */
export const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;

/** Rates over `seconds` and percentiles of a tally. */
export function summarise(t: Tally, seconds: number): TallySummary {
  const answered = t.requests - t.errors - t.timeouts;
  return {
    requests: t.requests,
    ok: t.ok,
    events: t.events,
    shed: t.shed,
    rateLimited: t.rateLimited,
    errors: t.errors,
    timeouts: t.timeouts,
    status: { ...t.status },
    requestsPerSec: round(t.requests / Math.max(seconds, 1e-9)),
    okPerSec: round(t.ok / Math.max(seconds, 1e-9)),
    eventsPerSec: round(t.events / Math.max(seconds, 1e-9)),
    shedPct: answered > 0 ? round((100 * t.shed) / answered, 2) : 0,
    latency: t.latency.percentiles(),
    okLatency: t.okLatency.percentiles(),
  };
}
