// The load runner: plays a list of segments (rate, connections, class mix, seconds) against one URL with
// autocannon, recording every answer per class (and per tenant, when a segment names its tenants) and per
// second, and which events were acknowledged.
//
// Pacing: autocannon paces each connection per second (it sends that connection's share of `overallRate`, then
// waits for its next one-second tick), and all connections of one instance tick together. One instance per class
// would therefore offer its whole second's load in one burst. Each class is split into up to PHASES instances
// started 1/PHASES of a second apart, so the offered load arrives as PHASES smaller bursts per second: close to
// an open-loop arrival process while staying within autocannon's model (many connections, an overall rate).
import { randomBytes } from 'node:crypto';
import autocannon from 'autocannon';
import type { Priority } from '../lib/event-schema.js';
import { PRIORITIES } from '../lib/event-schema.js';
import type { EventSource } from './events.js';
import { slowUpload } from './slow-upload.js';
import { addTally, createTally, round, summarise, type Tally, type TallySummary } from './tally.js';

export type { Counts, Tally, TallySummary } from './tally.js';

const PHASES = 10;
/** Seconds of nothing but connection errors after which a run stops. */
const DEAD_TARGET_SECONDS = 5;

/** A class's share of the offered traffic. */
export interface MixShare {
  readonly priority: Priority;
  readonly share: number;
}

/** How a tenant of a multi-tenant segment sends. */
export type TenantKind = 'events' | 'slow-upload' | 'unauthenticated';

/** One tenant's traffic in a segment: its own rate, connections and class mix. */
export interface TenantLoad {
  /** The tenant, as reports name it; `events` and `slow-upload` send with its key (RunOptions.keys). */
  readonly tenant: string;
  /** `events`: autocannon with the tenant's key; `slow-upload`: bodies that trickle in over `uploadSeconds`;
   * `unauthenticated`: well-formed keys nobody issued, a fresh one per request. */
  readonly kind: TenantKind;
  readonly rate: number | null;
  readonly connections: number;
  readonly mix: readonly MixShare[];
  readonly uploadSeconds?: number;
}

/** One stretch of a run at a fixed offered rate. */
export interface Segment {
  readonly label: string;
  readonly seconds: number;
  /** Requests per second offered over all classes; null = closed loop (each connection sends as fast as answered). */
  readonly rate: number | null;
  readonly connections: number;
  readonly mix: readonly MixShare[];
  /** Several tenants, each with its own load (the segment's rate is then their sum); absent: one key sends it all. */
  readonly tenants?: readonly TenantLoad[];
}

/** Hard bounds on one run, whatever the scenario asks for. */
export const HARD_LIMITS = { maxSeconds: 3600, maxRequests: 10_000_000, maxRate: 200_000, maxConnections: 10_000 } as const;

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
  /** Per tenant, in a multi-tenant segment. */
  tenants?: Record<string, TallySummary>;
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
  tenants?: Record<string, TallySummary>;
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
  /** The key of each tenant a multi-tenant segment names. */
  readonly keys?: Readonly<Record<string, string>>;
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

/** Per-class and per-tenant tallies plus their total. */
type ClassTallies = { total: Tally; classes: Map<Priority, Tally>; tenants: Map<string, Tally> };

function createClassTallies(): ClassTallies {
  return { total: createTally(), classes: new Map(), tenants: new Map() };
}

function tenantTally(t: ClassTallies, tenant: string): Tally {
  let c = t.tenants.get(tenant);
  if (!c) t.tenants.set(tenant, (c = createTally()));
  return c;
}

function classTally(t: ClassTallies, priority: Priority): Tally {
  let c = t.classes.get(priority);
  if (!c) t.classes.set(priority, (c = createTally()));
  return c;
}

function summariseClasses(
  t: ClassTallies,
  seconds: number,
): { total: TallySummary; classes: Partial<Record<Priority, TallySummary>>; tenants?: Record<string, TallySummary> } {
  const classes: Partial<Record<Priority, TallySummary>> = {};
  for (const p of PRIORITIES) {
    const c = t.classes.get(p);
    if (c) classes[p] = summarise(c, seconds);
  }
  if (t.tenants.size === 0) return { total: summarise(t.total, seconds), classes };
  const tenants = Object.fromEntries([...t.tenants].map(([name, c]) => [name, summarise(c, seconds)]));
  return { total: summarise(t.total, seconds), classes, tenants };
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
    return {
      rate: r,
      connections: Math.max(1, Math.min(distribute(Math.max(connections, phases), phases, i), r)),
      offsetMs: Math.round((i * 1000) / phases),
    };
  });
}

/** A well-formed API key nobody issued (`fgk_` and 43 base64url characters): each one costs the target a lookup. */
function unissuedKey(): string {
  return `fgk_${randomBytes(32).toString('base64url')}`;
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
    if (plannedSeconds > HARD_LIMITS.maxSeconds)
      throw new Error(`a run lasts at most ${HARD_LIMITS.maxSeconds} s; segment ${seg.label} would end at ${plannedSeconds} s`);
    if (seg.rate !== null && seg.rate > HARD_LIMITS.maxRate)
      throw new Error(`segment ${seg.label}: rate ${seg.rate} is above the hard limit ${HARD_LIMITS.maxRate}`);
    if (seg.connections > HARD_LIMITS.maxConnections)
      throw new Error(`segment ${seg.label}: ${seg.connections} connections is above the hard limit ${HARD_LIMITS.maxConnections}`);
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

  const headers = (priority: Priority, key: string) => ({
    'content-type': 'application/json',
    authorization: `Bearer ${key}`,
    'x-priority': priority,
  });

  /** Updates the tallies an answer counts in: this second's and this segment's, per class, per tenant and in total. */
  const recorder = (segTally: ClassTallies, priority: Priority, tenant: string | undefined) => (fill: (t: Tally) => void) => {
    const targets = [classTally(second, priority), second.total, classTally(segTally, priority), segTally.total];
    if (tenant !== undefined) targets.push(tenantTally(second, tenant), tenantTally(segTally, tenant));
    for (const t of targets) fill(t);
  };

  /** Who sends an instance's requests: the run's key, a tenant's key, or (unauthenticated) a fresh unissued key each time. */
  interface Sender {
    readonly tenant?: string;
    readonly key: string;
    readonly unauthenticated?: boolean;
  }

  function runInstance(
    segTally: ClassTallies,
    priority: Priority,
    rate: number | null,
    connections: number,
    seconds: number,
    sender: Sender,
  ): Promise<void> {
    let lastEvents = 0;
    let lastShed = false;
    let lastRateLimited = false;
    const record = recorder(segTally, priority, sender.tenant);
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
            headers: headers(priority, sender.key),
            setupRequest(req, context) {
              const next = options.source.next();
              if (next.retry) retries++;
              (context as { seqs?: readonly number[] }).seqs = next.seqs;
              if (++sent >= maxRequests) stopAll(`reached --max-requests (${maxRequests})`);
              if (sender.unauthenticated) return { ...req, headers: headers(priority, unissuedKey()), body: next.body };
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

  /** A tenant uploading slowly: `rate` uploads a second (spread over its classes), each body taking `uploadSeconds`. */
  async function runSlowUploads(segTally: ClassTallies, load: TenantLoad, key: string, seconds: number): Promise<void> {
    const rate = load.rate ?? 1;
    const uploadMs = (load.uploadSeconds ?? 2) * 1000;
    const classes = load.mix.flatMap((m) => Array.from({ length: Math.max(1, Math.round(m.share)) }, () => m.priority));
    const uploads: Promise<void>[] = [];
    const started = performance.now();
    for (let i = 0; performance.now() - started < seconds * 1000 && !stoppedEarly; i++) {
      const priority = classes[i % classes.length]!;
      const record = recorder(segTally, priority, load.tenant);
      const body = options.source.next().body;
      if (++sent >= maxRequests) stopAll(`reached --max-requests (${maxRequests})`);
      const upload = slowUpload({
        url: options.url,
        key,
        body,
        uploadMs,
        pieces: 5,
        priority,
        timeoutMs: uploadMs + options.timeoutSeconds * 1000,
      });
      uploads.push(
        upload.result.then((r) =>
          record((t) => {
            t.requests++;
            if (r.timedOut) t.timeouts++;
            else if (r.status === 0) t.errors++;
            else {
              t.status[r.status] = (t.status[r.status] ?? 0) + 1;
              t.latency.record(r.ms);
              if (r.status >= 200 && r.status < 300) {
                t.ok++;
                t.okLatency.record(r.ms);
              }
              if (r.code === 'overloaded') t.shed++;
              if (r.status === 429) t.rateLimited++;
            }
          }),
        ),
      );
      const due = started + ((i + 1) * 1000) / rate;
      await new Promise((r) => setTimeout(r, Math.max(0, due - performance.now())));
    }
    await Promise.all(uploads);
  }

  /** The instances of one segment: per class, or per tenant and class. */
  function launch(seg: Segment, segTally: ClassTallies): Promise<void>[] {
    const launches: Promise<void>[] = [];
    const loads: readonly TenantLoad[] = seg.tenants ?? [
      { tenant: '', kind: 'events', rate: seg.rate, connections: seg.connections, mix: seg.mix },
    ];
    for (const load of loads) {
      const tenant = seg.tenants ? load.tenant : undefined;
      const key = tenant === undefined || load.kind === 'unauthenticated' ? options.key : options.keys?.[tenant];
      if (key === undefined) throw new Error(`segment ${seg.label}: no key for tenant ${load.tenant}`);
      if (load.kind === 'slow-upload') {
        launches.push(runSlowUploads(segTally, load, key, seg.seconds));
        continue;
      }
      const sender: Sender = { tenant, key, unauthenticated: load.kind === 'unauthenticated' };
      const totalShare = load.mix.reduce((sum, m) => sum + m.share, 0);
      for (const { priority, share } of load.mix) {
        const fraction = share / totalShare;
        const rate = load.rate === null ? null : load.rate * fraction;
        const connections = Math.max(1, Math.round(load.connections * fraction));
        for (const part of instancesFor(rate, connections)) {
          launches.push(
            new Promise<void>((r) => setTimeout(r, part.offsetMs)).then(() =>
              stoppedEarly ? undefined : runInstance(segTally, priority, part.rate, part.connections, seg.seconds, sender),
            ),
          );
        }
      }
    }
    return launches;
  }

  try {
    for (let seg = nextSegment(segments); seg && !stoppedEarly; seg = nextSegment(segments)) {
      check(seg);
      current = seg;
      const segTally = createClassTallies();
      const segStart = performance.now();
      const launches = launch(seg, segTally);
      // autocannon stops each instance at its duration; this bounds a segment even if an instance hangs.
      // A rate of 0 is a pause: nothing is sent (the target settles, e.g. between a ramp and what follows it).
      if (launches.length === 0) await new Promise((r) => setTimeout(r, seg.seconds * 1000));
      const guard = setTimeout(
        () => stopAll(`segment ${seg.label} overran its ${seg.seconds} s`),
        (seg.seconds + options.timeoutSeconds + 10) * 1000,
      );
      await Promise.all(launches);
      clearTimeout(guard);
      // Rates are per planned second (the last answers of a segment arrive a little after its end), unless the
      // segment was cut short.
      const seconds = stoppedEarly ? Math.min(seg.seconds, round((performance.now() - segStart) / 1000, 2)) : seg.seconds;
      loadSeconds += seconds;
      segments.push({
        label: seg.label,
        offeredRate: seg.rate,
        seconds,
        connections: seg.connections,
        ...summariseClasses(segTally, seconds),
      });
      addTally(all.total, segTally.total);
      for (const [p, t] of segTally.classes) addTally(classTally(all, p), t);
      for (const [name, t] of segTally.tenants) addTally(tenantTally(all, name), t);
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
