import { parseArgs } from 'node:util';
import type { Config } from '../lib/config.js';
import type { MixShare } from '../loadtest/runner.js';
import { SCENARIO_DEFAULTS, SCENARIO_QUESTIONS, SCENARIOS, type ScenarioName } from '../loadtest/scenarios.js';
import { UsageError } from './usage.js';

/** A parsed `loadtest` invocation: a scenario run, or a comparison of two reports. */
export type LoadtestAction =
  | {
      readonly action: 'run';
      readonly scenario: ScenarioName;
      readonly url?: string;
      readonly key?: string;
      readonly duration?: number;
      readonly connections?: number;
      readonly rate?: number;
      readonly seed: number;
      readonly batchSize?: number;
      readonly out?: string;
      readonly databaseUrl?: string;
      readonly integrity: boolean;
      readonly timeoutSeconds: number;
      readonly sloP99Ms: number;
      readonly capacity?: number;
      readonly mix?: readonly MixShare[];
      readonly stepSeconds?: number;
      readonly maxRequests?: number;
      readonly drainTimeoutMs: number;
      readonly retryShare?: number;
      readonly quiet: boolean;
      /** Simulated SDK clients (`clients` scenario). */
      readonly clients?: number;
      /** `clients`: a ramp step keeps up while the p99 of track → delivered is within this, ms. */
      readonly deliverySloMs: number;
    }
  | { readonly action: 'compare'; readonly a: string; readonly b: string; readonly thresholdPct: number };

const asUsage = <T>(fn: () => T): T => {
  try {
    return fn();
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
};

function number(flag: string, raw: string | undefined, min: number, max: number): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || n < min || n > max)
    throw new UsageError(`--${flag} must be a number from ${min} to ${max}, got "${raw}"`);
  return n;
}

/** "20/30/50" → critical 20, normal 30, low 50 (shares, not necessarily summing to 100). */
function parseMix(raw: string | undefined): MixShare[] | undefined {
  if (raw === undefined) return undefined;
  const parts = raw.split('/').map(Number);
  if (parts.length !== 3 || parts.some((p) => !Number.isFinite(p) || p < 0) || parts.every((p) => p === 0)) {
    throw new UsageError(`--mix must be critical/normal/low shares like 20/30/50, got "${raw}"`);
  }
  return (['critical', 'normal', 'low'] as const).flatMap((priority, i) => (parts[i]! > 0 ? [{ priority, share: parts[i]! }] : []));
}

/** Parses `loadtest <scenario> [flags]` or `loadtest compare A.json B.json [--threshold 10%]`; UsageError before anything runs. */
export function parseLoadtestArgs(args: readonly string[]): LoadtestAction {
  const [first, ...rest] = args;
  if (first === 'compare') {
    const { values, positionals } = asUsage(() =>
      parseArgs({ args: rest, options: { threshold: { type: 'string', default: '10%' } }, allowPositionals: true, strict: true }),
    );
    if (positionals.length !== 2) throw new UsageError('loadtest compare needs two JSON reports: A (baseline) and B');
    const thresholdPct = number('threshold', values.threshold.replace(/%$/, ''), 0, 10_000)!;
    return { action: 'compare', a: positionals[0]!, b: positionals[1]!, thresholdPct };
  }
  if (first === undefined || !(SCENARIOS as readonly string[]).includes(first)) {
    const questions = SCENARIOS.map((s) => `  ${s.padEnd(21)} ${SCENARIO_QUESTIONS[s]}`).join('\n');
    throw new UsageError(`loadtest needs a scenario (${SCENARIOS.join(', ')}) or compare${first ? `, got "${first}"` : ''}\n${questions}`);
  }
  const { values: v } = asUsage(() =>
    parseArgs({
      args: rest,
      strict: true,
      options: {
        url: { type: 'string' },
        key: { type: 'string' },
        duration: { type: 'string' },
        connections: { type: 'string' },
        rate: { type: 'string' },
        seed: { type: 'string', default: '1' },
        'batch-size': { type: 'string' },
        out: { type: 'string' },
        'database-url': { type: 'string' },
        'no-integrity': { type: 'boolean', default: false },
        timeout: { type: 'string', default: '10' },
        'slo-p99': { type: 'string', default: '50' },
        capacity: { type: 'string' },
        mix: { type: 'string' },
        step: { type: 'string' },
        'max-requests': { type: 'string' },
        'drain-timeout': { type: 'string', default: '60' },
        'retry-share': { type: 'string' },
        quiet: { type: 'boolean', default: false },
        clients: { type: 'string' },
        'delivery-slo': { type: 'string', default: '2000' },
      },
    }),
  );
  if (v.url !== undefined) asUsage(() => new URL(v.url!));
  return {
    action: 'run',
    scenario: first as ScenarioName,
    url: v.url,
    key: v.key,
    duration: number('duration', v.duration, 1, 3600),
    connections: number('connections', v.connections, 1, 10_000),
    rate: number('rate', v.rate, 1, 200_000),
    seed: number('seed', v.seed, 0, 2 ** 31)!,
    batchSize: number('batch-size', v['batch-size'], 1, 1000),
    out: v.out,
    databaseUrl: v['database-url'],
    integrity: !v['no-integrity'],
    timeoutSeconds: number('timeout', v.timeout, 0.1, 120)!,
    sloP99Ms: number('slo-p99', v['slo-p99'], 1, 60_000)!,
    capacity: number('capacity', v.capacity, 1, 200_000),
    mix: parseMix(v.mix),
    stepSeconds: number('step', v.step, 1, 600),
    maxRequests: number('max-requests', v['max-requests'], 1, 10_000_000),
    drainTimeoutMs: number('drain-timeout', v['drain-timeout'], 0, 3600)! * 1000,
    retryShare: number('retry-share', v['retry-share'], 0, 0.95),
    quiet: v.quiet,
    clients: number('clients', v.clients, 1, 10_000),
    deliverySloMs: number('delivery-slo', v['delivery-slo'], 1, 600_000)!,
  };
}

/** `floodgate loadtest …`: runs a scenario (exit 1 on problems such as lost events) or compares two reports (exit 1 on a regression). */
export async function loadtestCommand(config: Config, action: LoadtestAction): Promise<void> {
  if (action.action === 'compare') {
    const { compareReports, readReport, renderComparison } = await import('../loadtest/compare.js');
    const diffs = compareReports(await readReport(action.a), await readReport(action.b), action.thresholdPct);
    console.log(renderComparison(action.a, action.b, diffs, action.thresholdPct));
    if (diffs.some((d) => d.regression)) process.exitCode = 1;
    return;
  }
  if (action.scenario === 'clients') return clientsCommand(config, action);
  const { runScenario } = await import('../loadtest/run-scenario.js');
  const { renderText } = await import('../loadtest/report.js');
  const { report, files } = await runScenario({
    ...action,
    url: action.url ?? `http://127.0.0.1:${config.port}`,
    databaseUrl: action.integrity ? (action.databaseUrl ?? config.databaseUrl) : null,
    progress: !action.quiet,
  });
  console.log(renderText(report));
  if (files) console.log(`\nreports: ${files.json}\n         ${files.markdown}\n         ${files.chart}`);
  if (report.problems.length > 0) process.exitCode = 1;
}

/** How long the simulated clients may take to deliver what they hold once the last phase is over. */
const CLIENTS_CLOSE_TIMEOUT_MS = 30_000;

/** `floodgate loadtest clients`: the client model (simulated SDK clients) against the API; exit 1 on problems. */
async function clientsCommand(config: Config, action: Extract<LoadtestAction, { action: 'run' }>): Promise<void> {
  const { runClientsScenario } = await import('../loadtest/run-clients.js');
  const { renderClientsText } = await import('../loadtest/client-report.js');
  const defaults = SCENARIO_DEFAULTS.clients;
  const { report, files } = await runClientsScenario({
    url: action.url ?? `http://127.0.0.1:${config.port}`,
    key: action.key,
    databaseUrl: action.integrity ? (action.databaseUrl ?? config.databaseUrl) : null,
    seed: action.seed,
    clients: action.clients ?? defaults.connections,
    mix: action.mix,
    duration: action.duration ?? defaults.duration,
    capacity: action.capacity,
    rampStart: action.rate ?? defaults.rate!,
    stepSeconds: action.stepSeconds ?? 5,
    deliverySloMs: action.deliverySloMs,
    maxRequests: action.maxRequests,
    drainTimeoutMs: action.drainTimeoutMs,
    closeTimeoutMs: CLIENTS_CLOSE_TIMEOUT_MS,
    sdk: { requestTimeoutMs: action.timeoutSeconds * 1000 },
    progress: !action.quiet,
    out: action.out,
  });
  console.log(renderClientsText(report));
  if (files) console.log(`\nreports: ${files.json}\n         ${files.markdown}`);
  if (report.problems.length > 0) process.exitCode = 1;
}
