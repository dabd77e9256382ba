// The load runner: plays a list of segments (rate, connections, class mix, seconds) against one URL with
// autocannon, recording every answer per class and per second, and which events were acknowledged.
//
// Pacing: autocannon paces each connection per second (it sends that connection's share of `overallRate`, then
// waits for its next one-second tick), and all connections of one instance tick together. One instance per class
// would therefore offer its whole second's load in one burst. Each class is split into up to PHASES instances
// started 1/PHASES of a second apart, so the offered load arrives as PHASES smaller bursts per second: close to
// an open-loop arrival process while staying within autocannon's model (many connections, an overall rate).
import autocannon from 'autocannon';
import type { Priority } from '../lib/event-schema.js';
import { PRIORITIES } from '../lib/event-schema.js';
import type { EventSource } from './events.js';
import { createHistogram, type Histogram, type Percentiles } from './histogram.js';

const PHASES = 10;
/** Seconds of nothing but connection errors after which a run stops. */
const DEAD_TARGET_SECONDS = 5;

/** A class's share of the offered traffic. */
export interface MixShare {
  readonly priority: Priority;
  readonly share: number;
}

/** One stretch of a run at a fixed offered rate. */
export interface Segment {
  readonly label: string;
  readonly seconds: number;
  /** Requests per second offered over all classes; null = closed loop (each connection sends as fast as answered). */
  readonly rate: number | null;
  readonly connections: number;
  readonly mix: readonly MixShare[];
}

/** Hard bounds on one run, whatever the scenario asks for. */
export const HARD_LIMITS = { maxSeconds: 3600, maxRequests: 10_000_000, maxRate: 200_000, maxConnections: 10_000 } as const;

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

/** One second of a run. */
export interface Sample {
  /** Seconds since the run started (end of this second). */
  t: number;
  segment: string;
  offeredRate: number | null;
  total: TallySummary;
  classes: Partial<Record<Priority, TallySummary>>;
}

/** One segment's totals. */
export interface SegmentResult {
  label: string;
  offeredRate: number | null;
  seconds: number;
  connections: number;
  total: TallySummary;
  classes: Partial<Record<Priority, TallySummary>>;
}

/** Which events the target acknowledged: counts per run-wide sequence number. */
export interface Acknowledged {
  /** Sequence numbers acknowledged at least once. */
  seqs(): number[];
  /** Ids returned in 2xx answers (a retried event counts each time it is acknowledged). */
  readonly ids: number;
}

export interface RunResult {
  startedAt: string;
  finishedAt: string;
  seconds: number;
  samples: Sample[];
  segments: SegmentResult[];
  total: TallySummary;
  classes: Partial<Record<Priority, TallySummary>>;
  /** Why the run ended early, if it did (a hard limit). */
  stoppedEarly: string | null;
  acknowledged: Acknowledged;
  /** Requests sent that were retries of an earlier body (duplicates scenario). */
  retries: number;
}

export interface RunOptions {
  /** The only address the run sends to: POST <url>/v1/events. */
  readonly url: string;
  readonly key: string;
  /** The segments, or a function choosing the next one from those done so far (null ends the run). */
  readonly segments: readonly Segment[] | ((done: readonly SegmentResult[]) => Segment | null);
  readonly source: EventSource;
  /** Client timeout per request, seconds. */
  readonly timeoutSeconds: number;
  /** The run stops when this many requests were sent (capped by HARD_LIMITS). */
  readonly maxRequests?: number;
  /** Called once a second with the sample just taken. */
  readonly onSample?: (sample: Sample) => void;
}

/** An empty tally. */
export function createTally(): Tally {
  return { requests: 0, ok: 0, events: 0, shed: 0, rateLimited: 0, errors: 0, timeouts: 0, status: {}, latency: createHistogram(), okLatency: createHistogram() };
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

const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;

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

/** Per-class tallies plus their total. */
type ClassTallies = { total: Tally; classes: Map<Priority, Tally> };

function createClassTallies(): ClassTallies {
  return { total: createTally(), classes: new Map() };
}

function classTally(t: ClassTallies, priority: Priority): Tally {
  let c = t.classes.get(priority);
  if (!c) t.classes.set(priority, (c = createTally()));
  return c;
}

function summariseClasses(t: ClassTallies, seconds: number): { total: TallySummary; classes: Partial<Record<Priority, TallySummary>> } {
  const classes: Partial<Record<Priority, TallySummary>> = {};
  for (const p of PRIORITIES) {
    const c = t.classes.get(p);
    if (c) classes[p] = summarise(c, seconds);
  }
  return { total: summarise(t.total, seconds), classes };
}

function createAcknowledged(): Acknowledged & { mark(seqs: readonly number[]): void; add(n: number): void } {
  let counts = new Uint8Array(1 << 16);
  let ids = 0;
  let highest = -1;
  return {
    get ids() {
      return ids;
    },
    add(n) {
      ids += n;
    },
    mark(seqs) {
      for (const s of seqs) {
        if (s >= counts.length) {
          const grown = new Uint8Array(Math.max(counts.length * 2, s + 1));
          grown.set(counts);
          counts = grown;
        }
        if (counts[s]! < 255) counts[s]!++;
        if (s > highest) highest = s;
      }
    },
    seqs() {
      const out: number[] = [];
      for (let s = 0; s <= highest; s++) if (counts[s]! > 0) out.push(s);
      return out;
    },
  };
}

/** Splits `total` into `parts` whole numbers differing by at most one. */
function distribute(total: number, parts: number, i: number): number {
  return Math.floor(total / parts) + (i < total % parts ? 1 : 0);
}

/** The autocannon instances of one class in one segment: [rate, connections, start offset ms]. */
function instancesFor(rate: number | null, connections: number): Array<{ rate: number | null; connections: number; offsetMs: number }> {
  if (rate === null) return [{ rate: null, connections: Math.max(1, connections), offsetMs: 0 }];
  const whole = Math.round(rate);
  if (whole < 1) return [];
  const phases = Math.max(1, Math.min(PHASES, whole, Math.max(1, connections)));
  return Array.from({ length: phases }, (_, i) => {
    const r = distribute(whole, phases, i);
    return { rate: r, connections: Math.max(1, Math.min(distribute(Math.max(connections, phases), phases, i), r)), offsetMs: Math.round((i * 1000) / phases) };
  });
}

/** Checks a URL is http(s) and returns the ingest endpoint on it; nothing else is ever requested. */
export function ingestUrl(url: string): string {
  const parsed = new URL(url);
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error(`--url must be http or https, got "${url}"`);
  return `${parsed.origin}/v1/events`;
}

/** Plays the segments one after the other; resolves with every sample, the totals and what was acknowledged. */
export async function runLoad(options: RunOptions): Promise<RunResult> {
  const target = ingestUrl(options.url);
  const plan = options.segments;
  const nextSegment = typeof plan === 'function' ? plan : (done: readonly SegmentResult[]) => plan[done.length] ?? null;
  let plannedSeconds = 0;
  const check = (seg: Segment) => {
    plannedSeconds += seg.seconds;
    if (plannedSeconds > HARD_LIMITS.maxSeconds) throw new Error(`a run lasts at most ${HARD_LIMITS.maxSeconds} s; segment ${seg.label} would end at ${plannedSeconds} s`);
    if (seg.rate !== null && seg.rate > HARD_LIMITS.maxRate) throw new Error(`segment ${seg.label}: rate ${seg.rate} is above the hard limit ${HARD_LIMITS.maxRate}`);
    if (seg.connections > HARD_LIMITS.maxConnections) throw new Error(`segment ${seg.label}: ${seg.connections} connections is above the hard limit ${HARD_LIMITS.maxConnections}`);
  };
  if (typeof plan !== 'function') plan.forEach(check);
  plannedSeconds = 0;
  const maxRequests = Math.min(options.maxRequests ?? HARD_LIMITS.maxRequests, HARD_LIMITS.maxRequests);
  const acknowledged = createAcknowledged();
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const samples: Sample[] = [];
  const segments: SegmentResult[] = [];
  const all = createClassTallies();
  let second = createClassTallies();
  let current: Segment | undefined;
  let sent = 0;
  let loadSeconds = 0;
  let deadSeconds = 0;
  let retries = 0;
  let stoppedEarly: string | null = null;
  const running = new Set<autocannon.Instance>();

  const stopAll = (why: string) => {
    stoppedEarly ??= why;
    for (const instance of running) instance.stop();
  };

  const takeSample = () => {
    const t = Math.round((performance.now() - started) / 1000);
    const sample: Sample = { t, segment: current?.label ?? '', offeredRate: current?.rate ?? null, ...summariseClasses(second, 1) };
    // A target that refuses connections makes autocannon reconnect in a tight loop: stop rather than hammer it.
    deadSeconds = second.total.errors > 0 && second.total.errors === second.total.requests ? deadSeconds + 1 : 0;
    if (deadSeconds >= DEAD_TARGET_SECONDS) stopAll(`the target answered nothing for ${DEAD_TARGET_SECONDS} s (connection errors only)`);
    second = createClassTallies();
    samples.push(sample);
    options.onSample?.(sample);
  };
  const ticker = setInterval(takeSample, 1000);

  const headers = (priority: Priority) => ({ 'content-type': 'application/json', authorization: `Bearer ${options.key}`, 'x-priority': priority });

  function runInstance(seg: Segment, segTally: ClassTallies, priority: Priority, rate: number | null, connections: number, seconds: number): Promise<void> {
    let lastEvents = 0;
    let lastShed = false;
    let lastRateLimited = false;
    const record = (fill: (t: Tally) => void) => {
      for (const t of [classTally(second, priority), second.total, classTally(segTally, priority), segTally.total]) fill(t);
    };
    return new Promise<void>((resolve) => {
      const opts: autocannon.Options = {
        url: target,
        method: 'POST',
        connections,
        duration: seconds,
        timeout: options.timeoutSeconds,
        // A paced instance stops by itself after its share of the segment, so no request is cut off mid-flight
        // when the target keeps up; `duration` is the backstop when it does not.
        ...(rate !== null ? { overallRate: rate, maxOverallRequests: Math.max(connections, Math.round(rate * seconds)) } : {}),
        requests: [
          {
            method: 'POST',
            headers: headers(priority),
            setupRequest(req, context) {
              const next = options.source.next();
              if (next.retry) retries++;
              (context as { seqs?: readonly number[] }).seqs = next.seqs;
              if (++sent >= maxRequests) stopAll(`reached --max-requests (${maxRequests})`);
              return { ...req, body: next.body };
            },
            onResponse(status, body, context) {
              lastEvents = 0;
              lastShed = status === 503 && body.includes('"overloaded"');
              lastRateLimited = status === 429;
              if (status >= 200 && status < 300) {
                try {
                  const ids = (JSON.parse(body) as { ids?: unknown[] }).ids ?? [];
                  lastEvents = ids.length;
                  acknowledged.add(ids.length);
                  const seqs = (context as { seqs?: readonly number[] }).seqs ?? [];
                  if (ids.length === seqs.length) acknowledged.mark(seqs);
                } catch {
                  // A 2xx without a JSON body acknowledges nothing we can count.
                }
              }
            },
          },
        ],
      };
      const instance = autocannon(opts, () => {
        running.delete(instance);
        resolve();
      });
      running.add(instance);
      instance.on('response', (_client: unknown, statusCode: number, _bytes: number, ms: number) => {
        const ok = statusCode >= 200 && statusCode < 300;
        const events = lastEvents;
        const shed = lastShed;
        const limited = lastRateLimited;
        record((t) => {
          t.requests++;
          t.status[statusCode] = (t.status[statusCode] ?? 0) + 1;
          t.latency.record(ms);
          if (ok) {
            t.ok++;
            t.events += events;
            t.okLatency.record(ms);
          }
          if (shed) t.shed++;
          if (limited) t.rateLimited++;
        });
      });
      instance.on('reqError', (err: Error) => {
        const timeout = err.message === 'request timed out';
        record((t) => {
          t.requests++;
          if (timeout) t.timeouts++;
          else t.errors++;
        });
      });
    });
  }

  try {
    for (let seg = nextSegment(segments); seg && !stoppedEarly; seg = nextSegment(segments)) {
      check(seg);
      current = seg;
      const segTally = createClassTallies();
      const segStart = performance.now();
      const launches: Promise<void>[] = [];
      const totalShare = seg.mix.reduce((s, m) => s + m.share, 0);
      for (const { priority, share } of seg.mix) {
        const fraction = share / totalShare;
        const rate = seg.rate === null ? null : seg.rate * fraction;
        const connections = Math.max(1, Math.round(seg.connections * fraction));
        for (const part of instancesFor(rate, connections)) {
          const seconds = seg.seconds;
          launches.push(
            new Promise<void>((r) => setTimeout(r, part.offsetMs)).then(() =>
              stoppedEarly ? undefined : runInstance(seg, segTally, priority, part.rate, part.connections, seconds),
            ),
          );
        }
      }
      // autocannon stops each instance at its duration; this bounds a segment even if an instance hangs.
      // A rate of 0 is a pause: nothing is sent (the target settles, e.g. between a ramp and what follows it).
      if (launches.length === 0) await new Promise((r) => setTimeout(r, seg.seconds * 1000));
      const guard = setTimeout(() => stopAll(`segment ${seg.label} overran its ${seg.seconds} s`), (seg.seconds + options.timeoutSeconds + 10) * 1000);
      await Promise.all(launches);
      clearTimeout(guard);
      // Rates are per planned second (the last answers of a segment arrive a little after its end), unless the
      // segment was cut short.
      const seconds = stoppedEarly ? Math.min(seg.seconds, round((performance.now() - segStart) / 1000, 2)) : seg.seconds;
      loadSeconds += seconds;
      segments.push({ label: seg.label, offeredRate: seg.rate, seconds, connections: seg.connections, ...summariseClasses(segTally, seconds) });
      addTally(all.total, segTally.total);
      for (const [p, t] of segTally.classes) addTally(classTally(all, p), t);
    }
  } finally {
    clearInterval(ticker);
    for (const instance of running) instance.stop();
  }
  if (second.total.requests > 0) takeSample();
  const seconds = (performance.now() - started) / 1000;
  return {
    startedAt,
    finishedAt: new Date().toISOString(),
    seconds: round(seconds, 2),
    samples,
    segments,
    ...summariseClasses(all, Math.max(loadSeconds, 1)),
    stoppedEarly,
    acknowledged,
    retries,
  };
}
