// The client model: many simulated applications, each with its own Floodgate SDK client (batching per class,
// backoff, Retry-After, adaptive throttling, a bounded queue), tracking events at a rate that changes by phase.
// Beside the open loop of runner.ts — which offers requests whatever the answers — this offers *events* and
// lets the SDK decide when and how to send them, as real clients do under shedding. It records, per second and
// per phase, what was tracked, delivered, dropped and how long delivery took, and which events were delivered.
import {
  createClient,
  type ClientOptions,
  type DeliveredEvent,
  type FloodgateClient,
  type FloodgateError,
  type RequestReport,
} from '../client/src/index.js';
import { PRIORITIES, type Priority } from '../lib/event-schema.js';
import { generateEvent, seededRandom } from './events.js';
import type { Percentiles } from './histogram.js';
import {
  byClass,
  fateOf,
  fateTallies,
  mergedPercentiles,
  tallies,
  type ByClass,
  type ClientPhaseResult,
  type ClientSecond,
  type Tallies,
} from './client-tallies.js';
import { HARD_LIMITS, ingestUrl, type MixShare } from './runner.js';

export type { ByClass, ClientPhaseResult, ClientSecond, PhaseFate } from './client-tallies.js';

/** A stretch of the run at one offered event rate (over all clients). */
export interface ClientPhase {
  readonly label: string;
  readonly seconds: number;
  readonly eventsPerSec: number;
}

export interface ClientModelOptions {
  readonly url: string;
  readonly key: string;
  /** Simulated applications, each with its own SDK client. */
  readonly clients: number;
  readonly mix: readonly MixShare[];
  /** The phases, or a function choosing the next from those done (null ends the run). */
  readonly phases: readonly ClientPhase[] | ((done: readonly ClientPhaseResult[]) => ClientPhase | null);
  /** Stamped in every event's `data.run` for the integrity check; `data.seq` is unique per event. */
  readonly runId: string;
  readonly seed: number;
  /** SDK options for every client (url, key and callbacks are the model's). */
  readonly sdk?: Partial<Omit<ClientOptions, 'url' | 'key' | 'onError' | 'onDelivered' | 'onRequest'>>;
  /** The run stops generating after this many HTTP attempts (capped by HARD_LIMITS). */
  readonly maxRequests?: number;
  /** How long the clients may take to deliver what they hold once the phases are over. */
  readonly closeTimeoutMs: number;
  readonly onSecond?: (s: ClientSecond) => void;
  /** Called as each phase begins, with its label (and with 'close' once the phases are over). */
  readonly onPhase?: (label: string) => void;
}

export interface ClientModelResult {
  startedAt: string;
  finishedAt: string;
  seconds: number;
  samples: ClientSecond[];
  phases: ClientPhaseResult[];
  totals: { tracked: number; delivered: number; dropped: ByClass; failed: number; undeliveredAtClose: number; requests: number };
  /** Sequence numbers of delivered events, and how many were reported delivered more than once (a client bug). */
  deliveredSeqs(): number[];
  deliveredTwice: number;
  stoppedEarly: string | null;
}

const TICK_MS = 10;
const WITHIN_MS = 10_000;

/** Runs the phases with `clients` SDK clients, then closes them (bounded by closeTimeoutMs). */
export async function runClientModel(o: ClientModelOptions): Promise<ClientModelResult> {
  ingestUrl(o.url);
  if (o.clients < 1 || o.clients > HARD_LIMITS.maxConnections) throw new Error(`clients must be 1 to ${HARD_LIMITS.maxConnections}`);
  const plan = o.phases;
  const nextPhase = typeof plan === 'function' ? plan : (done: readonly ClientPhaseResult[]) => plan[done.length] ?? null;
  const maxRequests = Math.min(o.maxRequests ?? HARD_LIMITS.maxRequests, HARD_LIMITS.maxRequests);
  const random = seededRandom(o.seed);
  const totalShare = o.mix.reduce((s, m) => s + m.share, 0);
  const pickClass = (): Priority => {
    let r = random() * totalShare;
    for (const m of o.mix) if ((r -= m.share) < 0) return m.priority;
    return o.mix.at(-1)!.priority;
  };

  let second = tallies();
  let phaseTally = tallies();
  const fates: Array<ReturnType<typeof fateTallies>> = [];
  let phaseOf: Uint8Array = new Uint8Array(1 << 16);
  let deliveredCount: Uint8Array = new Uint8Array(1 << 16);
  let highestSeq = -1;
  let deliveredTwice = 0;
  let undeliveredAtClose = 0;
  let seq = 0;
  let phaseIndex = 0;
  let stoppedEarly: string | null = null;
  const totals = { tracked: 0, delivered: 0, dropped: byClass(), failed: 0, requests: 0 };
  const grow = (a: Uint8Array, n: number) => {
    if (n < a.length) return a;
    const b = new Uint8Array(Math.max(a.length * 2, n + 1));
    b.set(a);
    return b;
  };

  const onDelivered = (events: readonly DeliveredEvent[]) => {
    for (const e of events) {
      const s = (e.event.data as { seq: number }).seq;
      if (deliveredCount[s]! > 0) deliveredTwice++;
      if (deliveredCount[s]! < 255) deliveredCount[s]!++;
      const ms = e.deliveredAt - e.trackedAt;
      const fate = fates[phaseOf[s]!]![e.priority];
      fate.delivered++;
      if (ms <= WITHIN_MS) fate.within10s++;
      fate.latency.record(ms);
      for (const t of [second, phaseTally]) {
        t.delivered[e.priority]++;
        t.latency[e.priority].record(ms);
      }
      totals.delivered++;
    }
  };
  const onError = (err: FloodgateError) => {
    for (const e of err.events) {
      const s = (e.event.data as { seq: number }).seq;
      const fate = fates[phaseOf[s]!]![e.priority];
      if (err.code === 'queue_full') {
        fate.dropped++;
        totals.dropped[e.priority]++;
        for (const t of [second, phaseTally]) t.dropped[e.priority]++;
      } else if (err.code === 'client_closed') {
        undeliveredAtClose++;
        fate.failed++;
      } else {
        fate.failed++;
        totals.failed++;
        for (const t of [second, phaseTally]) t.failed++;
      }
    }
  };
  const onRequest = (r: RequestReport) => {
    totals.requests++;
    if (totals.requests >= maxRequests) stoppedEarly ??= `reached --max-requests (${maxRequests})`;
    for (const t of [second, phaseTally]) {
      t.requests++;
      if (r.outcome === 'accepted') t.accepted++;
      if (r.status === 503) t.shed++;
      if (r.status === 429) t.rateLimited++;
      if (r.status === null) t.errors++;
    }
  };
  const clients: FloodgateClient[] = Array.from({ length: o.clients }, () =>
    createClient({
      ...o.sdk,
      url: o.url,
      key: o.key,
      onDelivered,
      onError,
      onRequest,
      random: seededRandom(Math.floor(random() * 2 ** 31)),
    }),
  );
  const heldNow = () => clients.reduce((n, c) => n + c.stats().held.events, 0);
  const throttledSoFar = () => clients.reduce((n, c) => n + c.stats().throttled, 0);

  const started = performance.now();
  const startedAt = new Date().toISOString();
  const samples: ClientSecond[] = [];
  const phases: ClientPhaseResult[] = [];
  let phase: ClientPhase | null = null;
  let throttledMark = 0;
  const percentilesOf = (t: Tallies) =>
    Object.fromEntries(PRIORITIES.map((p) => [p, t.latency[p].percentiles()])) as Record<Priority, Percentiles>;
  const takeSample = () => {
    const throttled = throttledSoFar();
    second.throttled = throttled - throttledMark;
    phaseTally.throttled += second.throttled;
    throttledMark = throttled;
    const { latency: _l, ...counts } = second;
    const sample: ClientSecond = {
      t: Math.round((performance.now() - started) / 1000),
      phase: phase?.label ?? 'close',
      offeredPerSec: phase?.eventsPerSec ?? 0,
      ...counts,
      latency: percentilesOf(second),
      held: heldNow(),
    };
    samples.push(sample);
    o.onSecond?.(sample);
    second = tallies();
  };
  const ticker = setInterval(takeSample, 1000);

  /** Tracks the events owed since the last tick at the phase's rate, each to a random client. */
  const generate = (rate: number, owed: { events: number; at: number }) => {
    const now = performance.now();
    // After a stall (a saturated event loop) at most one second is made up, in one burst.
    owed.events += Math.min(rate, (rate * (now - owed.at)) / 1000);
    owed.at = now;
    for (; owed.events >= 1 && !stoppedEarly; owed.events--) {
      const priority = pickClass();
      const s = seq++;
      phaseOf = grow(phaseOf, s);
      deliveredCount = grow(deliveredCount, s);
      phaseOf[s] = phaseIndex;
      highestSeq = s;
      const event = generateEvent(random, s);
      event.data.run = o.runId;
      fates[phaseIndex]![priority].tracked++;
      second.tracked[priority]++;
      phaseTally.tracked[priority]++;
      totals.tracked++;
      clients[Math.floor(random() * clients.length)]!.track(event, { priority });
    }
  };

  let plannedSeconds = 0;
  try {
    for (phase = nextPhase(phases); phase && !stoppedEarly; phase = nextPhase(phases)) {
      plannedSeconds += phase.seconds;
      if (plannedSeconds > HARD_LIMITS.maxSeconds) throw new Error(`a run lasts at most ${HARD_LIMITS.maxSeconds} s`);
      if (phase.eventsPerSec > HARD_LIMITS.maxRate * 100)
        throw new Error(`phase ${phase.label}: ${phase.eventsPerSec} events/s is above the hard limit`);
      o.onPhase?.(phase.label);
      phaseIndex = fates.length;
      if (phaseIndex > 255) throw new Error('at most 256 phases');
      fates.push(fateTallies());
      phaseTally = tallies();
      const phaseStart = performance.now();
      const heldAtStart = heldNow();
      const owed = { events: 0, at: phaseStart };
      const rate = phase.eventsPerSec;
      await new Promise<void>((resolve) => {
        const tick = setInterval(() => {
          if (stoppedEarly || performance.now() - phaseStart >= phase!.seconds * 1000) {
            clearInterval(tick);
            return resolve();
          }
          generate(rate, owed);
        }, TICK_MS);
      });
      const seconds = (performance.now() - phaseStart) / 1000;
      phases.push({
        label: phase.label,
        seconds: Math.round(seconds * 100) / 100,
        offeredPerSec: rate,
        trackedPerSec: Math.round(PRIORITIES.reduce((n, p) => n + phaseTally.tracked[p], 0) / seconds),
        deliveredPerSec: Math.round(PRIORITIES.reduce((n, p) => n + phaseTally.delivered[p], 0) / seconds),
        requests: phaseTally.requests,
        shed: phaseTally.shed,
        rateLimited: phaseTally.rateLimited,
        errors: phaseTally.errors,
        throttled: phaseTally.throttled,
        latency: mergedPercentiles(phaseTally),
        heldAtStart,
        heldAtEnd: heldNow(),
        // Filled in once the run is over: events tracked late in the phase are delivered after it.
        fate: fateOf(fates[phaseIndex]!),
      });
    }
    phase = null;
    o.onPhase?.('close');
    await Promise.all(clients.map((c) => c.close({ timeoutMs: o.closeTimeoutMs })));
  } finally {
    clearInterval(ticker);
    await Promise.all(clients.map((c) => c.close({ timeoutMs: 0 })));
  }
  takeSample();
  phases.forEach((p, i) => (p.fate = fateOf(fates[i]!)));
  return {
    startedAt,
    finishedAt: new Date().toISOString(),
    seconds: Math.round((performance.now() - started) / 10) / 100,
    samples,
    phases,
    totals: { ...totals, undeliveredAtClose },
    deliveredSeqs() {
      const out: number[] = [];
      for (let s = 0; s <= highestSeq; s++) if (deliveredCount[s]! > 0) out.push(s);
      return out;
    },
    deliveredTwice,
    stoppedEarly,
  };
}
