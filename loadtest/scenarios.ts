// The scenarios: each answers one operator question by choosing segments for the runner, then derives the
// figures that answer it (capacity, recovery, overload behaviour, drift) from the samples.
import type { Priority } from '../lib/event-schema.js';
import type { Sample, Segment, SegmentResult, MixShare, TallySummary, TenantLoad } from './runner.js';

export const SCENARIOS = [
  'smoke',
  'steady',
  'ramp',
  'spike',
  'overload',
  'soak',
  'batch',
  'duplicates',
  'noisy-neighbour',
  'slow-upload',
  'unauthenticated-flood',
  'clients',
] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

/** The question each scenario answers (shown in the usage and in docs/loadtesting.md). */
export const SCENARIO_QUESTIONS: Record<ScenarioName, string> = {
  smoke: 'does it accept and store events end to end? (20 req/s, 5 s; fails on any non-2xx)',
  steady: 'what latency at the rate I expect? (--rate, default 500 req/s, 60 s)',
  ramp: 'what is the capacity C: the highest rate with p99 within --slo-p99 and < 1 % failures?',
  spike: 'does a 5× burst hurt, and how fast is it back to normal? (--rate is the base)',
  overload:
    'at 2× and 4× C with 20/30/50 critical/normal/low, who is served and who is shed? (after a ½C warm-up and an unloaded ½C reference)',
  soak: 'does it drift over time: latency, errors, backlog? (default 600 s)',
  batch: 'how many events/s in batches of --batch-size (default 100)?',
  duplicates: 'in a retry storm (half the requests resend earlier events with the same idempotency keys), is each event stored once?',
  'noisy-neighbour':
    'tenant a floods at 10× the --rate of steady tenants b and c (all classes mixed): are b and c still served (≥ 99 %, p99 within --slo-p99) while a is shed?',
  'slow-upload': 'a tenant uploads its bodies slowly (2 s each): are steady tenants b and c still served?',
  'unauthenticated-flood': 'requests with keys nobody issued arrive at 10× --rate: are steady tenants b and c still served?',
  clients:
    'with --clients SDK clients (batching, backoff, Retry-After, throttling), what is C in events/s, and at 2× and 4× C what is delivered, how fast is critical delivered, is anything lost?',
};

/** The scenarios that run several tenants, each with its own key, and report per tenant. */
export const MULTI_TENANT_SCENARIOS = ['noisy-neighbour', 'slow-upload', 'unauthenticated-flood'] as const;
export type MultiTenantScenario = (typeof MULTI_TENANT_SCENARIOS)[number];

/** Whether a scenario runs several tenants. */
export function isMultiTenant(name: ScenarioName): name is MultiTenantScenario {
  return (MULTI_TENANT_SCENARIOS as readonly string[]).includes(name);
}

/** The tenants of the multi-tenant scenarios, as reports name them; the steady ones are those the aim is about. */
export const TENANTS = { noisy: 'a', steady: ['b', 'c'], slow: 'slow', unauthenticated: 'unauthenticated' } as const;
/** How many times the steady rate the noisy tenant (or the unauthenticated flood) offers. */
export const FLOOD_FACTOR = 10;
/** Seconds of calm before and after the disturbance. */
const CALM_SECONDS = 5;

/** The 20/30/50 critical/normal/low mix of the overload scenario and the shedding benchmark. */
export const OVERLOAD_MIX: readonly MixShare[] = [
  { priority: 'critical', share: 20 },
  { priority: 'normal', share: 30 },
  { priority: 'low', share: 50 },
];
const NORMAL_ONLY: readonly MixShare[] = [{ priority: 'normal', share: 1 }];

/** The knobs every scenario reads (CLI flags, already validated). */
export interface ScenarioKnobs {
  readonly duration?: number;
  readonly connections?: number;
  readonly rate?: number;
  readonly mix?: readonly MixShare[];
  readonly sloP99Ms: number;
  /** Capacity C for `overload`; measured with a ramp first when absent. */
  readonly capacity?: number;
  /** Seconds per ramp step. */
  readonly stepSeconds?: number;
}

/** Defaults per scenario: seconds, rate (null = closed loop), connections, batch size. */
export const SCENARIO_DEFAULTS: Record<ScenarioName, { duration: number; rate: number | null; connections: number; batchSize: number }> = {
  smoke: { duration: 5, rate: 20, connections: 4, batchSize: 1 },
  steady: { duration: 60, rate: 500, connections: 50, batchSize: 1 },
  ramp: { duration: 180, rate: 100, connections: 50, batchSize: 1 },
  spike: { duration: 30, rate: 200, connections: 100, batchSize: 1 },
  overload: { duration: 20, rate: null, connections: 500, batchSize: 1 },
  soak: { duration: 600, rate: 300, connections: 50, batchSize: 1 },
  batch: { duration: 30, rate: 50, connections: 10, batchSize: 100 },
  duplicates: { duration: 20, rate: 200, connections: 20, batchSize: 1 },
  'noisy-neighbour': { duration: 30, rate: 100, connections: 0, batchSize: 1 },
  'slow-upload': { duration: 30, rate: 100, connections: 0, batchSize: 1 },
  'unauthenticated-flood': { duration: 30, rate: 100, connections: 0, batchSize: 1 },
  // The client model (loadtest/run-clients.ts): rate is the ramp's first step in events/s, connections the clients.
  clients: { duration: 20, rate: 2000, connections: 100, batchSize: 1 },
};

/** Connections for a paced tenant: enough that ~100 ms answers do not hold its rate back. */
const connectionsFor = (rate: number) => Math.max(4, Math.ceil(rate / 10));

/** The segments of a multi-tenant scenario: calm, the disturbance for `duration` s, calm again; `rate` per steady tenant. */
export function tenantPlan(name: MultiTenantScenario, rate: number, duration: number, mix: readonly MixShare[]): Segment[] {
  const events = (tenant: string, r: number): TenantLoad => ({ tenant, kind: 'events', rate: r, connections: connectionsFor(r), mix });
  const steady = TENANTS.steady.map((t) => events(t, rate));
  const segment = (label: string, seconds: number, tenants: TenantLoad[]): Segment => ({
    label,
    seconds,
    rate: tenants.reduce((sum, t) => sum + (t.rate ?? 0), 0),
    connections: tenants.reduce((sum, t) => sum + t.connections, 0),
    mix,
    tenants,
  });
  const calm = name === 'noisy-neighbour' ? [events(TENANTS.noisy, rate), ...steady] : steady;
  const disturbance: TenantLoad =
    name === 'noisy-neighbour'
      ? events(TENANTS.noisy, FLOOD_FACTOR * rate)
      : name === 'slow-upload'
        ? // As many uploads a second as a steady tenant sends requests (at least 20), each body taking 2 s to arrive.
          {
            tenant: TENANTS.slow,
            kind: 'slow-upload',
            rate: Math.max(20, rate),
            connections: 2 * Math.max(20, rate),
            mix,
            uploadSeconds: 2,
          }
        : {
            tenant: TENANTS.unauthenticated,
            kind: 'unauthenticated',
            rate: FLOOD_FACTOR * rate,
            connections: connectionsFor(FLOOD_FACTOR * rate),
            mix,
          };
  const during = name === 'noisy-neighbour' ? [disturbance, ...steady] : [...steady, disturbance];
  return [segment('before', CALM_SECONDS, calm), segment(DISTURBANCE_LABEL[name], duration, during), segment('after', CALM_SECONDS, calm)];
}

/** The label of the segment a multi-tenant scenario is about. */
export const DISTURBANCE_LABEL: Readonly<Record<MultiTenantScenario, string>> = {
  'noisy-neighbour': `a at ${FLOOD_FACTOR}×`,
  'slow-upload': 'slow uploads',
  'unauthenticated-flood': 'unauthenticated flood',
};

/** One tenant's figures in the segment a multi-tenant scenario is about. */
export interface TenantFigures {
  tenant: string;
  requestsPerSec: number;
  /** 2xx over requests, in %. */
  successPct: number;
  /** p99 of every answer, and of 2xx answers, in ms. */
  p99Ms: number;
  okP99Ms: number;
  shedPct: number;
  timeouts: number;
  status: Record<string, number>;
}

/** Per-tenant success and p99 of a segment, and whether the steady tenants met the aim (≥ 99 %, p99 within the SLO). */
export function tenantFigures(seg: SegmentResult, sloP99Ms: number): { segment: string; tenants: TenantFigures[]; steadyMet: boolean } {
  const tenants = Object.entries(seg.tenants ?? {}).map(([tenant, t]) => ({
    tenant,
    requestsPerSec: t.requestsPerSec,
    successPct: t.requests > 0 ? Math.round((10000 * t.ok) / t.requests) / 100 : 100,
    p99Ms: t.latency.p99,
    okP99Ms: t.okLatency.p99,
    shedPct: t.shedPct,
    timeouts: t.timeouts,
    status: t.status,
  }));
  const steady = tenants.filter((t) => (TENANTS.steady as readonly string[]).includes(t.tenant));
  const steadyMet = steady.length > 0 && steady.every((t) => t.successPct >= 99 && t.p99Ms <= sloP99Ms);
  return { segment: seg.label, tenants, steadyMet };
}

const RAMP_FACTOR = 1.25;
/** A ramp step fails past this share of failed requests (non-2xx, errors, timeouts). */
const MAX_FAILURE_SHARE = 0.01;
/** …or when the target achieves less than this share of the offered rate. */
const MIN_ACHIEVED_SHARE = 0.9;

/** Whether a segment kept the SLO: p99 of all answers within target, < 1 % failures, ≥ 90 % of the offered rate. */
export function withinSlo(seg: SegmentResult, sloP99Ms: number): boolean {
  const t = seg.total;
  if (t.requests === 0) return false;
  const failures = t.requests - t.ok;
  const achievedOk = seg.offeredRate === null || t.requestsPerSec >= MIN_ACHIEVED_SHARE * seg.offeredRate;
  return t.latency.p99 <= sloP99Ms && failures / t.requests < MAX_FAILURE_SHARE && achievedOk;
}

/** Ramp segments: from `start` req/s, ×1.25 per step, until a step breaks the SLO or `maxSeconds` is spent. */
export function rampPlan(
  start: number,
  stepSeconds: number,
  maxSeconds: number,
  connections: number,
  mix: readonly MixShare[],
  sloP99Ms: number,
) {
  return (done: readonly SegmentResult[]): Segment | null => {
    const last = done.at(-1);
    if (last && !withinSlo(last, sloP99Ms)) return null;
    if ((done.length + 1) * stepSeconds > maxSeconds) return null;
    const rate = Math.round(start * RAMP_FACTOR ** done.length);
    // Enough connections that a step is not limited by them at a few ms per request.
    return { label: `ramp ${rate}/s`, seconds: stepSeconds, rate, connections: Math.max(connections, Math.ceil(rate / 50)), mix };
  };
}

/** Capacity from ramp steps: the achieved 2xx rate of the last step within the SLO (null if none was). */
export function capacityOf(
  steps: readonly SegmentResult[],
  sloP99Ms: number,
): {
  capacity: number | null;
  brokeAt: number | null;
  steps: Array<{ offered: number | null; achieved: number; p99: number; failures: number; withinSlo: boolean }>;
} {
  let capacity: number | null = null;
  let brokeAt: number | null = null;
  const rows = steps.map((s) => {
    const ok = withinSlo(s, sloP99Ms);
    if (ok && brokeAt === null) capacity = s.total.okPerSec;
    if (!ok && brokeAt === null) brokeAt = s.offeredRate;
    return {
      offered: s.offeredRate,
      achieved: s.total.okPerSec,
      p99: s.total.latency.p99,
      failures: s.total.requests - s.total.ok,
      withinSlo: ok,
    };
  });
  return { capacity, brokeAt, steps: rows };
}

/** The segments of a fixed-plan scenario. */
export function fixedPlan(name: Exclude<ScenarioName, 'ramp'>, knobs: ScenarioKnobs, capacity?: number): Segment[] {
  const d = SCENARIO_DEFAULTS[name];
  const duration = knobs.duration ?? d.duration;
  const rate = knobs.rate ?? d.rate;
  const connections = knobs.connections ?? d.connections;
  const mix = knobs.mix ?? (name === 'overload' ? OVERLOAD_MIX : NORMAL_ONLY);
  const seg = (label: string, seconds: number, r: number | null, c = connections): Segment => ({
    label,
    seconds,
    rate: r,
    connections: c,
    mix,
  });
  switch (name) {
    case 'spike': {
      const third = Math.max(1, Math.round(duration / 3));
      const base = rate ?? 200;
      return [seg('before', third, base), seg('spike 5×', third, base * 5), seg('after', Math.max(1, duration - 2 * third), base)];
    }
    case 'overload': {
      if (!capacity) throw new Error('overload needs a capacity');
      const calm = Math.max(1, Math.round(duration / 2));
      const half = Math.max(1, Math.round(capacity / 2));
      return [
        // Opening hundreds of connections at once and a cold JIT make the first seconds slow: not "unloaded".
        seg('warm-up ½C', Math.min(3, calm), half),
        seg('unloaded ½C', calm, Math.max(1, Math.round(capacity / 2))),
        seg('2×C', duration, Math.round(2 * capacity)),
        seg('4×C', duration, Math.round(4 * capacity)),
        seg('recovery ½C', Math.max(1, Math.round(duration * 0.75)), Math.max(1, Math.round(capacity / 2))),
      ];
    }
    default:
      return [seg(name, duration, rate)];
  }
}

/** Seconds from a segment's start until every later second of it was `steady` (null: never, or only in its last second). */
function secondsUntilSteady(samples: readonly Sample[], segment: string, steady: (s: Sample) => boolean): number | null {
  const seconds = samples.filter((s) => s.segment === segment);
  if (seconds.length === 0) return null;
  let firstOfRun = -1;
  for (let i = seconds.length - 1; i >= 0; i--) {
    if (!steady(seconds[i]!)) break;
    firstOfRun = i;
  }
  // The run of steady seconds must include the segment's last second; a recovery seen only in its last second is too thin to trust.
  if (firstOfRun < 0 || firstOfRun === seconds.length - 1) return null;
  return firstOfRun;
}

const served = (s: Sample) => s.total.requests > 0 && s.total.ok / s.total.requests >= 0.99;

/** Seconds from a segment's start until every later second of it had p99 within `p99Ms` and ≥ 99 % 2xx (null: never). */
export function recoverySeconds(samples: readonly Sample[], segment: string, p99Ms: number): number | null {
  return secondsUntilSteady(samples, segment, (s) => served(s) && s.total.latency.p99 <= p99Ms);
}

/** Seconds from a segment's start until every later second had ≥ 99 % 2xx, whatever its latency: shedding has stopped. */
export function servingAgainSeconds(samples: readonly Sample[], segment: string): number | null {
  return secondsUntilSteady(samples, segment, served);
}

/** What overload looked like at one level, for the shedding benchmark's table. */
export interface OverloadFigures {
  level: string;
  offered: number | null;
  /** Requests actually sent per second: below `offered` when every connection waits for an answer (closed loop). */
  sentPerSec: number;
  /** 2xx per second (within the client timeout: timeouts are failures) over C. */
  goodputOverC: number;
  goodputPerSec: number;
  criticalSuccessPct: number;
  acceptedP99Ms: number;
  /** Of the shed requests, the share that came from the lowest class present, in %. */
  shedFromLowestPct: number | null;
  shedPct: number;
  timeouts: number;
  errors: number;
}

const lowestPresent = (classes: Partial<Record<Priority, TallySummary>>): Priority | undefined =>
  (['low', 'normal', 'critical'] as const).find((p) => (classes[p]?.requests ?? 0) > 0);

/** Goodput, critical success, accepted p99 and shed distribution of one overload segment. */
export function overloadFigures(seg: SegmentResult, capacity: number): OverloadFigures {
  const critical = seg.classes.critical;
  const lowest = lowestPresent(seg.classes);
  const shedTotal = seg.total.shed;
  return {
    level: seg.label,
    offered: seg.offeredRate,
    sentPerSec: seg.total.requestsPerSec,
    goodputPerSec: seg.total.okPerSec,
    goodputOverC: Math.round((seg.total.okPerSec / capacity) * 100) / 100,
    criticalSuccessPct: critical && critical.requests > 0 ? Math.round((10000 * critical.ok) / critical.requests) / 100 : 100,
    acceptedP99Ms: seg.total.okLatency.p99,
    shedFromLowestPct: shedTotal > 0 && lowest ? Math.round((10000 * (seg.classes[lowest]?.shed ?? 0)) / shedTotal) / 100 : null,
    shedPct: seg.total.shedPct,
    timeouts: seg.total.timeouts,
    errors: seg.total.errors,
  };
}

/** Soak drift: p99 and failures in the first and last tenth of the run (at least 1 s each). */
export function driftOf(
  samples: readonly Sample[],
): { firstP99Ms: number; lastP99Ms: number; firstFailures: number; lastFailures: number } | null {
  if (samples.length < 2) return null;
  const n = Math.max(1, Math.floor(samples.length / 10));
  const part = (xs: readonly Sample[]) => ({
    p99: Math.max(...xs.map((s) => s.total.latency.p99)),
    failures: xs.reduce((f, s) => f + s.total.requests - s.total.ok, 0),
  });
  const first = part(samples.slice(0, n));
  const last = part(samples.slice(-n));
  return { firstP99Ms: first.p99, lastP99Ms: last.p99, firstFailures: first.failures, lastFailures: last.failures };
}
