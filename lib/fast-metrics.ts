import type { Metric, Registry } from 'prom-client';

/** One exposed sample, in the shape prom-client's own metrics return from get() (its type is not exported). */
interface Sample {
  readonly labels: Readonly<Record<string, string | number>>;
  /** Labels of the whole series, rendered after `labels` (prom-client puts a histogram's `le` first this way). */
  readonly sharedLabels?: Readonly<Record<string, string>>;
  readonly value: number;
  readonly metricName?: string;
}

/** A metric as Registry and AggregatorRegistry read it. */
interface MetricSnapshot {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'histogram';
  readonly aggregator: 'sum';
  readonly values: Sample[];
}

/**
 * Counters and histograms for the request hot path. prom-client validates and re-hashes the label set on every
 * call, even through a `labels()` child (≈1.3 µs per histogram observation, measured): at tens of thousands of
 * requests per second that alone is several per cent of an API core. These keep one plain record per label set,
 * found once and then updated with a few additions, and render at scrape time in prom-client's own format, so
 * they sit in the same Registry, merge in the cluster AggregatorRegistry (aggregator `sum`) and expose identically.
 */

type LabelValues<L extends string> = Readonly<Record<L, string>>;

interface FastMetricOptions<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly labelNames?: readonly L[];
  readonly registers: readonly Registry[];
}

abstract class FastMetric<L extends string, S> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  readonly aggregator = 'sum' as const;
  abstract readonly type: 'counter' | 'histogram';
  /** Every series in creation order, for rendering. */
  protected readonly series: { labels: LabelValues<L>; data: S }[] = [];
  /**
   * Series found by walking one Map per label, in labelNames order: a few Map lookups and no key string to
   * build, so a hot-path observation with a fresh labels object stays well under a microsecond.
   */
  private index = new Map<string, unknown>();
  private unlabelled: S | undefined;

  constructor(options: FastMetricOptions<L>) {
    this.name = options.name;
    this.help = options.help;
    this.labelNames = options.labelNames ?? [];
    // A Registry accepts any object with name, get() and reset(); the type names only its own classes.
    for (const registry of options.registers) registry.registerMetric(this as unknown as Metric);
  }

  protected abstract create(): S;

  /** The record of one label set, created on first use. */
  protected record(labels: LabelValues<L> | undefined): S {
    const names = this.labelNames;
    if (names.length === 0) return (this.unlabelled ??= this.createSeries({} as LabelValues<L>));
    const values = labels ?? ({} as LabelValues<L>);
    let level = this.index;
    for (let i = 0; i < names.length - 1; i++) {
      const value = values[names[i]!];
      let next = level.get(value) as Map<string, unknown> | undefined;
      if (!next) {
        next = new Map();
        level.set(value, next);
      }
      level = next;
    }
    const last = values[names[names.length - 1]!];
    let data = level.get(last) as S | undefined;
    if (!data) {
      data = this.createSeries(values);
      level.set(last, data);
    }
    return data;
  }

  /** A new series for `values`, checked once here rather than on every observation. */
  private createSeries(values: LabelValues<L>): S {
    for (const name of this.labelNames) {
      if (typeof values[name] !== 'string') throw new Error(`${this.name}: label "${name}" is missing`);
    }
    const entry = { labels: { ...values }, data: this.create() };
    this.series.push(entry);
    return entry.data;
  }

  /** Forgets every series (prom-client's Registry.resetMetrics calls it). */
  reset(): void {
    this.series.length = 0;
    this.index = new Map();
    this.unlabelled = undefined;
  }

  protected abstract values(): Sample[];

  /** The metric as Registry renders it to text (label order exactly as prom-client's own metrics). */
  async getForPromString(): Promise<MetricSnapshot> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.values() };
  }

  /** The metric as getMetricsAsJSON returns it for cluster aggregation: shared labels folded into `labels`. */
  async get(): Promise<MetricSnapshot> {
    const values = this.values().map(({ sharedLabels, ...sample }) =>
      sharedLabels ? { ...sample, labels: { ...sample.labels, ...sharedLabels } } : sample,
    );
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

/** A counter. */
export class FastCounter<L extends string = string> extends FastMetric<L, { value: number }> {
  readonly type = 'counter' as const;

  protected create() {
    return { value: 0 };
  }

  /** Adds `value` (default 1) to the series of `labels`. */
  inc(labels?: LabelValues<L>, value = 1): void {
    if (!(value >= 0)) throw new Error(`${this.name}: a counter only goes up, got ${value}`);
    this.record(labels).value += value;
  }

  protected values(): Sample[] {
    return this.series.map(({ labels, data }) => ({ labels: { ...labels }, value: data.value }));
  }
}

interface HistogramData {
  readonly buckets: Float64Array;
  sum: number;
  count: number;
}

/** A histogram with fixed upper bounds. */
export class FastHistogram<L extends string = string> extends FastMetric<L, HistogramData> {
  readonly type = 'histogram' as const;
  readonly upperBounds: readonly number[];

  constructor(options: FastMetricOptions<L> & { readonly buckets: readonly number[] }) {
    super(options);
    this.upperBounds = [...options.buckets].sort((a, b) => a - b);
  }

  protected create(): HistogramData {
    return { buckets: new Float64Array(this.upperBounds.length), sum: 0, count: 0 };
  }

  /** Records one observation in the series of `labels` (or, for a histogram without labels, `observe(value)`). */
  observe(labelsOrValue: LabelValues<L> | number, value?: number): void {
    if (typeof labelsOrValue === 'number') this.add(this.record(undefined), labelsOrValue);
    else this.add(this.record(labelsOrValue), value as number);
  }

  private add(data: HistogramData, value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`${this.name}: not a finite number: ${value}`);
    const bounds = this.upperBounds;
    // Non-cumulative per bucket here; cumulated when rendered. Above the last bound only +Inf (count) grows.
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        data.buckets[i]!++;
        break;
      }
    }
    data.sum += value;
    data.count++;
  }

  protected values(): Sample[] {
    const out: Sample[] = [];
    const bucketName = `${this.name}_bucket`;
    for (const { labels, data } of this.series) {
      let cumulative = 0;
      for (let i = 0; i < this.upperBounds.length; i++) {
        cumulative += data.buckets[i]!;
        out.push({ labels: { le: this.upperBounds[i]! }, sharedLabels: labels, value: cumulative, metricName: bucketName });
      }
      out.push({ labels: { le: '+Inf' }, sharedLabels: labels, value: data.count, metricName: bucketName });
      out.push({ labels: {}, sharedLabels: labels, value: data.sum, metricName: `${this.name}_sum` });
      out.push({ labels: {}, sharedLabels: labels, value: data.count, metricName: `${this.name}_count` });
    }
    return out;
  }
}
