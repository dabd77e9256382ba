import { performance } from 'node:perf_hooks';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from '../../lib/logger.js';

/** A metric's name and help text. */
export interface MetricSpec<L extends string = never> {
  readonly name: string;
  readonly help: string;
  readonly labelNames?: readonly L[];
}

/** The gauges and counter every scrape collector exposes about itself. */
export interface ScrapeSelfMetrics {
  /** 1 when at least one section answered within the timeout, else 0. */
  readonly up: MetricSpec;
  readonly duration: MetricSpec;
  /** Counter labelled `collector`: sections that failed or timed out, per scrape. */
  readonly errors: MetricSpec<'collector'>;
}

/**
 * A scrape-time collector over a dependency that may be down or hung. Metrics are grouped in sections; each
 * section's query runs at scrape time and, when it answers, sets its metrics in one synchronous step.
 */
export interface StatsScrape {
  /** A gauge whose value is refreshed by the scrape (and absent when its section failed). */
  gauge<L extends string = never>(spec: MetricSpec<L>): Gauge<L>;
  /** A counter mirroring a cumulative figure the dependency keeps; set to the absolute value each scrape. */
  counter<L extends string = never>(spec: MetricSpec<L>): Counter<L>;
  /**
   * Adds a section: `run` queries the dependency and resolves to a function that sets `metrics` from the
   * answer. The metrics are cleared before that function runs, and stay cleared when `run` fails or is late.
   */
  section(name: string, metrics: readonly (Gauge<string> | Counter<string>)[], run: () => Promise<() => void>): void;
}

/** Options of createStatsScrape. */
export interface StatsScrapeOptions {
  readonly registry: Registry;
  /** Whole-scrape budget: the scrape returns by then whatever the dependency does. */
  readonly timeoutMs: number;
  readonly self: ScrapeSelfMetrics;
  readonly logger?: Logger;
}

type Outcome = { ok: true; apply: () => void } | { ok: false; error: unknown };

interface Run {
  outcome?: Outcome;
  /** Resolves (never rejects) once `outcome` is set. */
  settled: Promise<void>;
}

interface Section {
  readonly name: string;
  readonly metrics: readonly (Gauge<string> | Counter<string>)[];
  readonly run: () => Promise<() => void>;
  /** The query still running, possibly started by an earlier scrape that gave up waiting for it. */
  running?: Run;
  failing: boolean;
}

/** Makes a metric absent until it is set again: prom-client's reset() alone leaves an unlabelled metric at 0. */
function clear(metric: Gauge<string> | Counter<string>, labelled: boolean): void {
  metric.reset();
  // A counter dropping to 0 while Postgres is down would read as a counter reset, and rate() would count
  // the whole cumulative value again once it is back; absent is what "unknown" should look like.
  if (!labelled) metric.remove();
}

/** Builds the collector: its `up` gauge is registered first and starts the scrape every other metric joins. */
export function createStatsScrape(options: StatsScrapeOptions): StatsScrape {
  const { registry, timeoutMs, logger } = options;
  const registers = [registry];
  const sections: Section[] = [];
  const labelled = new WeakMap<object, boolean>();
  let current: Promise<void> | undefined;

  // prom-client reads a metric without a collect() as soon as a scrape begins, so every metric here joins the
  // scrape in its own collect(); concurrent scrapes (two Prometheus servers, a test) share one round of queries.
  const join = (): Promise<void> => {
    if (current === undefined) {
      // Never rejects: a scrape that threw would otherwise fail registry.metrics() and stay `current` forever.
      const scrape = scrapeOnce().catch((err: unknown) => {
        up.set(0);
        logger?.error({ err }, 'stats scrape failed');
      });
      current = scrape;
      void scrape.then(() => {
        if (current === scrape) current = undefined;
      });
    }
    return current;
  };

  const up = new Gauge({ name: options.self.up.name, help: options.self.up.help, registers, collect: join });
  const duration = new Gauge({ name: options.self.duration.name, help: options.self.duration.help, registers, collect: join });
  const errors = new Counter({
    name: options.self.errors.name,
    help: options.self.errors.help,
    labelNames: ['collector'],
    registers,
    collect: join,
  });

  function start(section: Section): Run {
    if (section.running) return section.running;
    const run: Run = { settled: Promise.resolve() };
    // The async wrapper turns a synchronous throw into a rejection, so every failure lands in `outcome`.
    run.settled = (async () => section.run())().then(
      (apply) => {
        run.outcome = { ok: true, apply };
      },
      (error: unknown) => {
        run.outcome = { ok: false, error };
      },
    );
    section.running = run;
    void run.settled.then(() => {
      if (section.running === run) section.running = undefined;
    });
    return run;
  }

  function report(section: Section, error: unknown): void {
    errors.inc({ collector: section.name });
    if (!section.failing) logger?.warn({ err: error, collector: section.name }, 'stats collector section failing');
    section.failing = true;
  }

  async function scrapeOnce(): Promise<void> {
    const began = performance.now();
    const runs = sections.map((section) => ({ section, run: start(section) }));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    await Promise.race([Promise.all(runs.map((r) => r.run.settled)), late]);
    clearTimeout(timer);
    let answered = 0;
    for (const { section, run } of runs) {
      for (const metric of section.metrics) clear(metric, labelled.get(metric) ?? false);
      const outcome = run.outcome;
      if (outcome === undefined) {
        report(section, new Error(`no answer within ${timeoutMs} ms`));
        continue;
      }
      if (!outcome.ok) {
        report(section, outcome.error);
        continue;
      }
      try {
        outcome.apply();
        answered++;
        if (section.failing) logger?.info({ collector: section.name }, 'stats collector section recovered');
        section.failing = false;
      } catch (err) {
        // An answer of an unexpected shape (a new server version) must not break the whole scrape.
        for (const metric of section.metrics) clear(metric, labelled.get(metric) ?? false);
        report(section, err);
      }
    }
    up.set(answered > 0 ? 1 : 0);
    duration.set((performance.now() - began) / 1000);
  }

  return {
    gauge<L extends string = never>(spec: MetricSpec<L>): Gauge<L> {
      const labelNames = spec.labelNames ?? [];
      const gauge = new Gauge<L>({ name: spec.name, help: spec.help, labelNames, registers, collect: join });
      labelled.set(gauge, labelNames.length > 0);
      return gauge;
    },
    counter<L extends string = never>(spec: MetricSpec<L>): Counter<L> {
      const labelNames = spec.labelNames ?? [];
      const counter = new Counter<L>({ name: spec.name, help: spec.help, labelNames, registers, collect: join });
      labelled.set(counter, labelNames.length > 0);
      return counter;
    },
    section(name, metrics, run) {
      sections.push({ name, metrics, run, failing: false });
    },
  };
}

/** A number from a driver value (pg returns bigint and numeric as strings); null and garbage become 0. */
export function num(value: unknown): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : 0;
  return Number.isFinite(n) ? n : 0;
}
