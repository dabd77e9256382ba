// One scenario end to end: key, segments, the run with a progress line per second, the integrity check
// against Postgres, the figures that answer the scenario's question, and the reports.
import { createApiKey, revokeApiKey } from '../lib/api-keys.js';
import { createPool, type Pool } from '../lib/db.js';
import { createEventSource } from './events.js';
import { checkIntegrity } from './integrity.js';
import { machine, progressLine, writeReports, type Report } from './report.js';
import { newRunId } from './run-key.js';
import { ingestUrl, runLoad, type Sample, type Segment, type SegmentResult } from './runner.js';
import {
  capacityOf,
  DISTURBANCE_LABEL,
  driftOf,
  fixedPlan,
  isMultiTenant,
  OVERLOAD_MIX,
  TENANTS,
  tenantFigures,
  tenantPlan,
  overloadFigures,
  rampPlan,
  recoverySeconds,
  SCENARIO_DEFAULTS,
  servingAgainSeconds,
  type ScenarioKnobs,
  type ScenarioName,
} from './scenarios.js';

/** Everything `floodgate loadtest <scenario>` takes. */
export interface LoadtestOptions extends ScenarioKnobs {
  readonly scenario: ScenarioName;
  readonly url: string;
  /** API key to send with; without one, a key is created in the database and revoked afterwards. */
  readonly key?: string;
  readonly seed: number;
  readonly batchSize?: number;
  /** Directory for the JSON, Markdown and SVG reports; none written when absent. */
  readonly out?: string;
  /** Database of the target, for the integrity check; null skips the check. */
  readonly databaseUrl: string | null;
  readonly timeoutSeconds: number;
  readonly maxRequests?: number;
  readonly drainTimeoutMs: number;
  /** Share of requests that resend an earlier body (duplicates scenario). */
  readonly retryShare?: number;
  /** Print a progress line per second on stderr. */
  readonly progress: boolean;
  /** Called once a second with the sample just taken (benchmarks read the machine alongside). */
  readonly onSample?: (sample: Sample) => void;
  /** Runs after the load, before the integrity check (tests tamper with rows here). */
  readonly beforeIntegrity?: (runId: string) => Promise<void>;
}

/** The result: the report, and where it was written. */
export interface LoadtestOutcome {
  readonly report: Report;
  readonly files: { json: string; markdown: string; chart: string } | null;
}

const PAUSE_AFTER_RAMP_SECONDS = 5;

/** The tenants a multi-tenant scenario sends as, by the name reports use (their keys' tenant is `loadtest-<name>`). */
const SCENARIO_TENANTS: Record<string, readonly string[]> = {
  'noisy-neighbour': [TENANTS.noisy, ...TENANTS.steady],
  'slow-upload': [...TENANTS.steady, TENANTS.slow],
  'unauthenticated-flood': TENANTS.steady,
};

/** Runs one scenario against `options.url` and returns its report (written to `options.out` when given). */
export async function runScenario(options: LoadtestOptions): Promise<LoadtestOutcome> {
  const target = ingestUrl(options.url);
  const runId = newRunId();
  const defaults = SCENARIO_DEFAULTS[options.scenario];
  const pool: Pool | null = options.databaseUrl ? createPool(options.databaseUrl, { max: 2, applicationName: 'floodgate-loadtest' }) : null;
  const createdKeys: string[] = [];
  try {
    let key = options.key;
    if (!key) {
      if (!pool) throw new Error('give --key, or --database-url so that a key can be created for the run');
      const created = await createApiKey(pool, { tenant: 'loadtest' });
      key = created.key;
      createdKeys.push(created.prefix);
    }
    const keys: Record<string, string> = {};
    if (isMultiTenant(options.scenario)) {
      if (!pool)
        throw new Error(
          `${options.scenario} sends as several tenants, each with its own key: give --database-url so that they can be created`,
        );
      for (const tenant of SCENARIO_TENANTS[options.scenario] ?? []) {
        const created = await createApiKey(pool, { tenant: `loadtest-${tenant}` });
        keys[tenant] = created.key;
        createdKeys.push(created.prefix);
      }
    }
    const source = createEventSource({
      seed: options.seed,
      runId,
      batchSize: options.batchSize ?? defaults.batchSize,
      idempotencyKeys: options.scenario === 'duplicates',
      retryShare: options.scenario === 'duplicates' ? (options.retryShare ?? 0.5) : 0,
    });

    const connections = options.connections ?? defaults.connections;
    const duration = options.duration ?? defaults.duration;
    const mix = options.mix ?? [{ priority: 'normal' as const, share: 1 }];
    let capacity = options.capacity;
    let rampSteps: SegmentResult[] = [];
    let segments: readonly Segment[] | ((done: readonly SegmentResult[]) => Segment | null);
    if (options.scenario === 'ramp' || (options.scenario === 'overload' && !capacity)) {
      // A ramp (for overload: first, to measure C; then a pause; then the overload segments).
      const rampSeconds = options.scenario === 'ramp' ? duration : 180;
      const ramp = rampPlan(
        options.scenario === 'ramp' ? (options.rate ?? defaults.rate!) : 100,
        options.stepSeconds ?? 5,
        rampSeconds,
        50,
        mix,
        options.sloP99Ms,
      );
      let overload: Segment[] | null = null;
      segments = (done) => {
        if (overload === null) {
          const step = ramp(done);
          if (step) return step;
          if (options.scenario === 'ramp') return null;
          rampSteps = [...done];
          capacity = capacityOf(rampSteps, options.sloP99Ms).capacity ?? undefined;
          if (!capacity) return null;
          overload = [
            { label: 'pause', seconds: PAUSE_AFTER_RAMP_SECONDS, rate: 0, connections: 1, mix },
            ...fixedPlan('overload', options, capacity),
          ];
        }
        return overload[done.length - rampSteps.length] ?? null;
      };
    } else if (isMultiTenant(options.scenario)) {
      segments = tenantPlan(options.scenario, options.rate ?? defaults.rate!, duration, options.mix ?? OVERLOAD_MIX);
    } else {
      segments = fixedPlan(options.scenario, options, capacity);
    }

    const result = await runLoad({
      url: options.url,
      key,
      keys,
      segments,
      source,
      timeoutSeconds: options.timeoutSeconds,
      maxRequests: options.maxRequests,
      onSample: (s) => {
        if (options.progress) process.stderr.write(`${progressLine(s)}\n`);
        options.onSample?.(s);
      },
    });
    if (options.scenario === 'ramp') rampSteps = result.segments;

    await options.beforeIntegrity?.(runId);
    const integrity = pool
      ? await checkIntegrity(pool, {
          runId,
          from: new Date(result.startedAt),
          to: new Date(result.finishedAt),
          acknowledged: result.acknowledged.seqs(),
          drainTimeoutMs: options.drainTimeoutMs,
        })
      : { skipped: 'no --database-url' };

    const problems: string[] = [];
    const report: Report = {
      tool: 'floodgate-loadtest',
      version: 1,
      scenario: options.scenario,
      runId,
      target,
      options: {
        duration,
        connections,
        rate: options.rate ?? defaults.rate,
        seed: options.seed,
        batchSize: options.batchSize ?? defaults.batchSize,
        timeoutSeconds: options.timeoutSeconds,
        sloP99Ms: options.sloP99Ms,
        ...(options.capacity ? { capacity: options.capacity } : {}),
        ...(options.mix ? { mix: options.mix } : {}),
        ...(options.maxRequests ? { maxRequests: options.maxRequests } : {}),
      },
      machine: machine(),
      startedAt: result.startedAt,
      finishedAt: result.finishedAt,
      seconds: result.seconds,
      stoppedEarly: result.stoppedEarly,
      summary: { total: result.total, classes: result.classes },
      segments: result.segments,
      samples: result.samples,
      acknowledgedIds: result.acknowledged.ids,
      retries: result.retries,
      integrity,
      problems,
    };

    if (rampSteps.length > 0) {
      report.capacity = { ...capacityOf(rampSteps, options.sloP99Ms), sloP99Ms: options.sloP99Ms };
      if (report.capacity.capacity === null)
        problems.push(`no ramp step kept p99 ≤ ${options.sloP99Ms} ms with < 1 % failures: capacity unknown`);
    }
    if (options.scenario === 'overload' && capacity) {
      const bySegment = (label: string) => result.segments.find((s) => s.label === label);
      const unloaded = bySegment('unloaded ½C');
      const unloadedP99Ms = unloaded?.total.okLatency.p99 ?? 0;
      report.overload = {
        capacity,
        unloadedP99Ms,
        levels: ['2×C', '4×C'].flatMap((l) => (bySegment(l) ? [overloadFigures(bySegment(l)!, capacity!)] : [])),
        recoverySeconds: recoverySeconds(result.samples, 'recovery ½C', options.sloP99Ms),
        servingAgainSeconds: servingAgainSeconds(result.samples, 'recovery ½C'),
      };
    }
    if (options.scenario === 'spike') {
      report.spike = {
        recoverySeconds: recoverySeconds(result.samples, 'after', options.sloP99Ms),
        baselineP99Ms: result.segments[0]?.total.latency.p99 ?? 0,
      };
    }
    if (options.scenario === 'soak') report.drift = driftOf(result.samples);
    if (isMultiTenant(options.scenario)) {
      const about = result.segments.find((seg) => seg.label === DISTURBANCE_LABEL[options.scenario as keyof typeof DISTURBANCE_LABEL]);
      if (about) {
        report.tenants = tenantFigures(about, options.sloP99Ms);
        if (!report.tenants.steadyMet)
          problems.push(
            `during ${about.label}, steady tenants ${TENANTS.steady.join(' and ')} did not all keep ≥ 99 % success with p99 ≤ ${options.sloP99Ms} ms`,
          );
      }
    }

    if ('ok' in integrity && !integrity.ok)
      problems.push(`integrity: ${integrity.missing} acknowledged events missing, ${integrity.duplicated} duplicated rows`);
    if (result.total.ok === 0) problems.push('no request was accepted (2xx): check --url and --key');
    if (options.scenario === 'smoke' && result.total.ok !== result.total.requests)
      problems.push(`smoke: ${result.total.requests - result.total.ok} of ${result.total.requests} requests were not accepted`);
    if (result.stoppedEarly) problems.push(`stopped early: ${result.stoppedEarly}`);

    const files = options.out ? await writeReports(options.out, report) : null;
    return { report, files };
  } finally {
    if (pool) {
      for (const prefix of createdKeys) await revokeApiKey(pool, prefix).catch(() => {});
      await pool.end();
    }
  }
}
