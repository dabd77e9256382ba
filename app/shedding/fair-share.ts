import { PRIORITIES, type Priority } from '../../lib/event-schema.js';

/** Index of a class in the per-class arrays (PRIORITIES order: critical, normal, low). */
export const CLASS_INDEX: Readonly<Record<Priority, number>> = { critical: 0, normal: 1, low: 2 };
const CRITICAL = CLASS_INDEX.critical;
const NORMAL = CLASS_INDEX.normal;
const LOW = CLASS_INDEX.low;

/** Time constant of a tenant's smoothed demand: long enough to ride out one quiet tick, short enough to catch a flood within a second or two. */
const DEMAND_SMOOTHING_SECONDS = 1;
/** A tenant whose demand fell below this (requests/s, every class) and has nothing in flight is forgotten. */
const FORGET_BELOW_PER_SECOND = 0.001;
/** Beyond this many tenants, newcomers share one record: memory stays bounded whatever keys a flood presents. */
const MAX_TENANTS = 10_000;
const OVERFLOW_TENANT = '\u0000overflow';
/** Bisection steps for the fair level: 2^-40 of the widest tenant's demand is far below one request. */
const BISECTION_STEPS = 40;

/** One tenant as the shedder sees it; the arrays are indexed by CLASS_INDEX. */
export interface TenantLoad {
  readonly tenant: string;
  /** Decisions taken for it since the last update, per class. */
  readonly offered: Float64Array;
  /** Smoothed demand, requests per second, per class. */
  readonly rate: Float64Array;
  /** Probability that its next request of a class is shed. */
  readonly shed: Float64Array;
  /** Its requests whose body has been read and that are not answered yet. */
  inFlight: number;
}

/** What GET /v1/admin/load shows of one tenant. */
export interface TenantView {
  readonly tenant: string;
  readonly weight: number;
  readonly inFlight: number;
  readonly ratePerSecond: Record<Priority, number>;
  readonly shedProbability: Record<Priority, number>;
}

/** Per-tenant demand and the shed probability weighted fair shedding gives each tenant and class. */
export interface FairShare {
  /** The tenant's record, created on first sight: O(1), for every decision. */
  load(tenant: string): TenantLoad;
  /**
   * Smooths the demand counted since the last call and shares out the shedding the class law asks for
   * (`probability` per class): O(tenants) per tick, never per request.
   */
  update(dtSeconds: number, probability: (priority: Priority) => number): void;
  /** Whether every tenant's requests of the class are shed (what opens the class's gate). */
  classFullyShed(priority: Priority): boolean;
  /** Tenants tracked, and how many are being shed now. */
  counts(): { tenants: number; shed: number };
  /** The `n` tenants with the most demand. */
  top(n: number): TenantView[];
}

const round = (v: number, digits: number) => Math.round(v * 10 ** digits) / 10 ** digits;

/**
 * Weighted max-min fair shedding. The controller's class law says how much to shed: with class probabilities
 * p_normal and p_low and smoothed class demands D, the process admits
 *
 *   budget = D_critical + (1 − p_normal)·D_normal + (1 − p_low)·D_low        requests per second.
 *
 * That budget is shared between tenants by weighted water-filling on their total demand d_t: tenant t is
 * admitted a_t = min(d_t, λ·w_t), with the one λ for which Σ a_t = budget. A tenant at or below its share λ·w_t
 * is not shed at all; one above it has its excess shed. Within a tenant, the admitted amount goes to its critical
 * requests, then normal, then low: the class order holds inside each tenant's traffic, and one tenant's flood of
 * any class is shed before a quiet tenant's low traffic is touched. The budget counts every critical request, so
 * a tenant's critical requests are shed only when they alone exceed its share (a tenant flooding with critical
 * traffic), never within it: alone, or among equals, critical is never shed. The total shed is what the class
 * law would shed, so the controller's loop is unchanged; with equal tenants it is exactly the class law.
 */
export function createFairShare(weightOf: (tenant: string) => number = () => 1): FairShare {
  const tenants = new Map<string, TenantLoad>();
  const fullyShed = new Uint8Array(PRIORITIES.length);
  let shedTenants = 0;

  const create = (tenant: string): TenantLoad => ({
    tenant,
    offered: new Float64Array(PRIORITIES.length),
    rate: new Float64Array(PRIORITIES.length),
    shed: new Float64Array(PRIORITIES.length),
    inFlight: 0,
  });

  /** Smooths each tenant's demand; forgets the idle ones. */
  function smooth(dt: number): void {
    const alpha = 1 - Math.exp(-dt / DEMAND_SMOOTHING_SECONDS);
    for (const [name, t] of tenants) {
      let total = 0;
      for (let c = 0; c < PRIORITIES.length; c++) {
        t.rate[c]! += (t.offered[c]! / dt - t.rate[c]!) * alpha;
        t.offered[c] = 0;
        total += t.rate[c]!;
      }
      if (total < FORGET_BELOW_PER_SECOND && t.inFlight === 0) tenants.delete(name);
    }
  }

  /** The admitted rate of every tenant at fair level λ. */
  function admittedAt(lambda: number, weights: Float64Array, list: TenantLoad[]): number {
    let sum = 0;
    for (let i = 0; i < list.length; i++) {
      const t = list[i]!;
      sum += Math.min(t.rate[CRITICAL]! + t.rate[NORMAL]! + t.rate[LOW]!, lambda * weights[i]!);
    }
    return sum;
  }

  function share(pNormal: number, pLow: number): void {
    const list = [...tenants.values()];
    const weights = new Float64Array(list.length);
    let budget = 0;
    let hi = 0;
    for (let i = 0; i < list.length; i++) {
      const t = list[i]!;
      weights[i] = Math.max(weightOf(t.tenant), 1e-9);
      budget += t.rate[CRITICAL]! + (1 - pNormal) * t.rate[NORMAL]! + (1 - pLow) * t.rate[LOW]!;
      hi = Math.max(hi, (t.rate[CRITICAL]! + t.rate[NORMAL]! + t.rate[LOW]!) / weights[i]!);
    }
    let lo = 0;
    for (let step = 0; step < BISECTION_STEPS; step++) {
      const mid = (lo + hi) / 2;
      if (admittedAt(mid, weights, list) > budget) hi = mid;
      else lo = mid;
    }
    const lambda = lo;
    const law = [0, pNormal, pLow];
    let normalAdmitted = false;
    let lowAdmitted = false;
    shedTenants = 0;
    for (let i = 0; i < list.length; i++) {
      const t = list[i]!;
      const total = t.rate[CRITICAL]! + t.rate[NORMAL]! + t.rate[LOW]!;
      const hasRoom = lambda * weights[i]! > total * (1 + 1e-6);
      let rest = Math.min(total, lambda * weights[i]!);
      // Its share goes to its critical requests first, then normal, then low.
      for (const c of [CRITICAL, NORMAL, LOW]) {
        const admitted = Math.min(t.rate[c]!, rest);
        rest -= admitted;
        // A class it has not sent lately: admitted while its share has room left, else shed as the class law
        // says (a tenant whose normal traffic is being shed must not slip a low request through).
        t.shed[c] = t.rate[c]! > 0 ? 1 - admitted / t.rate[c]! : hasRoom ? 0 : law[c]!;
        // Rounding in the bisection leaves a sliver: a tenant within a millionth of its share is not shed.
        if (t.shed[c] < 1e-6) t.shed[c] = 0;
      }
      if (t.shed[CRITICAL]! > 0 || t.shed[NORMAL]! > 0 || t.shed[LOW]! > 0) shedTenants++;
      if (t.rate[NORMAL]! > 0 && t.shed[NORMAL]! < 1) normalAdmitted = true;
      if (t.rate[LOW]! > 0 && t.shed[LOW]! < 1) lowAdmitted = true;
    }
    // A gate opens only when the class law sheds the whole class and no tenant's share admits any of it.
    fullyShed[NORMAL] = pNormal >= 1 && !normalAdmitted ? 1 : 0;
    fullyShed[LOW] = pLow >= 1 && !lowAdmitted ? 1 : 0;
  }

  return {
    load(tenant) {
      let t = tenants.get(tenant);
      if (t) return t;
      if (tenants.size >= MAX_TENANTS) {
        t = tenants.get(OVERFLOW_TENANT);
        if (t) return t;
        tenant = OVERFLOW_TENANT;
      }
      t = create(tenant);
      tenants.set(tenant, t);
      return t;
    },
    update(dt, probability) {
      smooth(dt);
      const pNormal = probability('normal');
      const pLow = probability('low');
      if (pNormal <= 0 && pLow <= 0) {
        for (const t of tenants.values()) t.shed.fill(0);
        fullyShed.fill(0);
        shedTenants = 0;
        return;
      }
      share(pNormal, pLow);
    },
    classFullyShed(priority) {
      return fullyShed[CLASS_INDEX[priority]] === 1;
    },
    counts() {
      return { tenants: tenants.size, shed: shedTenants };
    },
    top(n) {
      const total = (t: TenantLoad) => t.rate[CRITICAL]! + t.rate[NORMAL]! + t.rate[LOW]!;
      return [...tenants.values()]
        .sort((a, b) => total(b) - total(a))
        .slice(0, n)
        .map((t) => ({
          tenant: t.tenant === OVERFLOW_TENANT ? '(other tenants)' : t.tenant,
          weight: weightOf(t.tenant),
          inFlight: t.inFlight,
          ratePerSecond: Object.fromEntries(PRIORITIES.map((p) => [p, round(t.rate[CLASS_INDEX[p]]!, 1)])) as Record<Priority, number>,
          shedProbability: Object.fromEntries(PRIORITIES.map((p) => [p, round(t.shed[CLASS_INDEX[p]]!, 3)])) as Record<Priority, number>,
        }));
    },
  };
}
