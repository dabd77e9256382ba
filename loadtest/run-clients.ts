// The `clients` scenario end to end: a key, the client model (a ramp to find C in events/s unless given, then
// ½C, 2×C, 4×C and ½C again), the integrity check of every delivered event, the figures and the reports.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ClientOptions } from '../client/src/index.js';
import { createPool, type Pool } from '../lib/db.js';
import {
  clientBacklogSeconds,
  clientCapacityOf,
  clientLevelFigures,
  clientOverloadPlan,
  clientRampPlan,
  clientRecoverySeconds,
  clientStepOk,
  CLIENT_LEVELS,
  isRampStep,
  type ClientLevelFigures,
} from './client-figures.js';
import { runClientModel, type ClientModelResult, type ClientPhase, type ClientPhaseResult, type ClientSecond } from './client-model.js';
import { checkIntegrity, type IntegrityResult } from './integrity.js';
import { machine, type Machine } from './report.js';
import type { MixShare } from './runner.js';
import { endRun, keyForRun, newRunId } from './run-key.js';
import { OVERLOAD_MIX } from './scenarios.js';

/** What `floodgate loadtest clients` takes. */
export interface ClientsScenarioOptions {
  readonly url: string;
  /** API key; without one a key is created in the database and revoked afterwards. */
  readonly key?: string;
  /** The target's database for the integrity check (and the key); null skips the check. */
  readonly databaseUrl: string | null;
  readonly seed: number;
  readonly clients: number;
  readonly mix?: readonly MixShare[];
  /** Seconds of each overload level (2×C, 4×C). */
  readonly duration: number;
  /** C in events/s; measured with a ramp first when absent. */
  readonly capacity?: number;
  /** Stop after the ramp (a benchmark finds C with shedding off, then overloads another Floodgate). */
  readonly rampOnly?: boolean;
  readonly rampStart: number;
  readonly stepSeconds: number;
  /** A ramp step keeps up while the p99 of track → delivered stays within this, ms. */
  readonly deliverySloMs: number;
  readonly maxRequests?: number;
  readonly drainTimeoutMs: number;
  readonly closeTimeoutMs: number;
  /** SDK options of every simulated client. */
  readonly sdk?: Partial<ClientOptions>;
  readonly progress: boolean;
  readonly out?: string;
  readonly onSecond?: (s: ClientSecond) => void;
  /** Called as each phase begins, with its label ('close' once the phases are over). */
  readonly onPhase?: (label: string) => void;
  /**
   * Entries waiting in the target's queue (its stream backlog), when the caller can read it: a ramp step then
   * keeps up only if the worker kept up with what was delivered (the backlog grew by at most a tenth of it).
   */
  readonly streamBacklog?: () => Promise<number>;
}

/** The JSON report of a `clients` run. */
export interface ClientsReport {
  tool: 'floodgate-loadtest';
  version: 1;
  scenario: 'clients';
  runId: string;
  target: string;
  options: Record<string, unknown>;
  machine: Machine;
  startedAt: string;
  finishedAt: string;
  seconds: number;
  capacity?: {
    capacity: number | null;
    brokeAt: number | null;
    deliverySloMs: number;
    steps: Array<{
      label: string;
      offered: number;
      tracked: number;
      delivered: number;
      p99Ms: number;
      heldAtEnd: number;
      workerBacklogGrowth: number | null;
      ok: boolean;
    }>;
  };
  overload?: {
    capacity: number;
    levels: ClientLevelFigures[];
    /** Critical events tracked at 2×C and 4×C delivered within 10 s, in %. */
    criticalWithin10sPct: number;
    /** Seconds after the overload until the server was back to normal for the clients (see clientRecoverySeconds). */
    recoverySeconds: number | null;
    /** Seconds after the overload until the clients had delivered their backlog (see clientBacklogSeconds). */
    backlogSeconds: number | null;
  };
  phases: ClientPhaseResult[];
  samples: ClientSecond[];
  totals: ClientModelResult['totals'];
  deliveredTwice: number;
  stoppedEarly: string | null;
  integrity: IntegrityResult | { skipped: string };
  problems: string[];
}

const PAUSE_SECONDS = 5;
/** A step keeps the worker up when the stream backlog grew by at most this share of the events it tracked, plus a batch. */
const WORKER_GROWTH_SHARE = 0.1;
const WORKER_GROWTH_SLACK = 500;

/** The stream backlog read twice a second, and how much it grew over each phase. */
function watchBacklog(read: (() => Promise<number>) | undefined) {
  let latest: number | null = null;
  const atStart = new Map<number, number | null>();
  const grew = new WeakMap<ClientPhaseResult, number | null>();
  const poll = () => {
    if (!read) return;
    read().then(
      (v) => (latest = v),
      () => {},
    );
  };
  const timer = read ? setInterval(poll, 500) : undefined;
  poll();
  return {
    /** Called as phase `done.length` begins: the backlog then ends the last phase and starts the next. */
    phaseBoundary(done: readonly ClientPhaseResult[]) {
      const last = done.at(-1);
      const start = atStart.get(done.length - 1);
      if (last && !grew.has(last)) grew.set(last, start === undefined || start === null || latest === null ? null : latest - start);
      atStart.set(done.length, latest);
    },
    growth: (step: ClientPhaseResult): number | null => grew.get(step) ?? null,
    keptUp(step: ClientPhaseResult): boolean {
      const g = grew.get(step);
      return g === undefined || g === null || g <= WORKER_GROWTH_SHARE * step.trackedPerSec * step.seconds + WORKER_GROWTH_SLACK;
    },
    stop() {
      if (timer) clearInterval(timer);
    },
  };
}
const RAMP_MAX_SECONDS = 180;

/** Runs the `clients` scenario against `options.url`; writes JSON and Markdown reports to `options.out`. */
export async function runClientsScenario(
  options: ClientsScenarioOptions,
): Promise<{ report: ClientsReport; files: { json: string; markdown: string } | null }> {
  const runId = newRunId();
  const pool: Pool | null = options.databaseUrl ? createPool(options.databaseUrl, { max: 2, applicationName: 'floodgate-loadtest' }) : null;
  let createdKey: string | null = null;
  try {
    const { key, created } = await keyForRun(pool, options.key, 'loadtest-clients');
    createdKey = created;
    let capacity = options.capacity;
    let rampSteps: ClientPhaseResult[] = [];
    const backlog = watchBacklog(options.streamBacklog);
    const keptUp = (step: ClientPhaseResult) => clientStepOk(step, options.deliverySloMs) && backlog.keptUp(step);
    const ramp = clientRampPlan(options.rampStart, options.stepSeconds, RAMP_MAX_SECONDS, keptUp);
    let overload: ClientPhase[] | null = capacity ? clientOverloadPlan(capacity, options.duration) : null;
    const phases = (done: readonly ClientPhaseResult[]): ClientPhase | null => {
      backlog.phaseBoundary(done);
      if (overload === null) {
        const step = ramp(done);
        if (step) return step;
        rampSteps = [...done];
        capacity = clientCapacityOf(rampSteps, keptUp).capacity ?? undefined;
        if (!capacity || options.rampOnly) return null;
        overload = [{ label: 'pause', seconds: PAUSE_SECONDS, eventsPerSec: 0 }, ...clientOverloadPlan(capacity, options.duration)];
      }
      return overload[done.length - rampSteps.length] ?? null;
    };
    const result = await runClientModel({
      url: options.url,
      key,
      clients: options.clients,
      mix: options.mix ?? OVERLOAD_MIX,
      phases,
      runId,
      seed: options.seed,
      sdk: options.sdk,
      maxRequests: options.maxRequests,
      closeTimeoutMs: options.closeTimeoutMs,
      onPhase: options.onPhase,
      onSecond: (s) => {
        if (options.progress) process.stderr.write(`${clientProgressLine(s)}\n`);
        options.onSecond?.(s);
      },
    });
    backlog.stop();
    const integrity = pool
      ? await checkIntegrity(pool, {
          runId,
          from: new Date(result.startedAt),
          to: new Date(result.finishedAt),
          acknowledged: result.deliveredSeqs(),
          drainTimeoutMs: options.drainTimeoutMs,
        })
      : { skipped: 'no --database-url' };

    const report: ClientsReport = {
      tool: 'floodgate-loadtest',
      version: 1,
      scenario: 'clients',
      runId,
      target: options.url,
      options: {
        clients: options.clients,
        duration: options.duration,
        seed: options.seed,
        deliverySloMs: options.deliverySloMs,
        mix: options.mix ?? OVERLOAD_MIX,
        sdk: options.sdk ?? {},
        ...(options.capacity ? { capacity: options.capacity } : {}),
      },
      machine: machine(),
      startedAt: result.startedAt,
      finishedAt: result.finishedAt,
      seconds: result.seconds,
      phases: result.phases,
      samples: result.samples,
      totals: result.totals,
      deliveredTwice: result.deliveredTwice,
      stoppedEarly: result.stoppedEarly,
      integrity,
      problems: [],
    };
    if (rampSteps.length > 0) {
      const found = clientCapacityOf(rampSteps, keptUp);
      report.capacity = {
        ...found,
        deliverySloMs: options.deliverySloMs,
        steps: rampSteps.filter(isRampStep).map((s) => ({
          label: s.label,
          offered: s.offeredPerSec,
          tracked: s.trackedPerSec,
          delivered: s.deliveredPerSec,
          p99Ms: s.latency.p99,
          heldAtEnd: s.heldAtEnd,
          workerBacklogGrowth: backlog.growth(s),
          ok: keptUp(s),
        })),
      };
      if (found.capacity === null)
        report.problems.push(
          `no ramp step kept up (delivery p99 ≤ ${options.deliverySloMs} ms, nothing lost, no growing backlog): capacity unknown (lower --rate)`,
        );
    }
    if (capacity && !options.rampOnly) {
      const levels = result.phases.filter((p) => p.label === CLIENT_LEVELS.double || p.label === CLIENT_LEVELS.quadruple);
      const critical = levels.reduce(
        (t, l) => ({ tracked: t.tracked + l.fate.critical.tracked, within: t.within + l.fate.critical.within10s }),
        { tracked: 0, within: 0 },
      );
      report.overload = {
        capacity,
        levels: result.phases
          .filter((p) => p.label !== 'pause' && !p.label.startsWith('ramp'))
          .map((p) => clientLevelFigures(p, capacity!)),
        criticalWithin10sPct: critical.tracked === 0 ? 100 : Math.floor((10000 * critical.within) / critical.tracked) / 100,
        recoverySeconds: clientRecoverySeconds(result.samples, CLIENT_LEVELS.recovery, options.deliverySloMs),
        backlogSeconds: clientBacklogSeconds(result.samples, CLIENT_LEVELS.recovery, CLIENT_LEVELS.unloaded),
      };
    }
    if ('ok' in integrity && !integrity.ok)
      report.problems.push(`integrity: ${integrity.missing} delivered events missing, ${integrity.duplicated} duplicated rows`);
    if (result.deliveredTwice > 0) report.problems.push(`${result.deliveredTwice} events were reported delivered twice by the SDK`);
    if (result.totals.delivered === 0) report.problems.push('no event was delivered: check --url and --key');
    if (result.stoppedEarly) report.problems.push(`stopped early: ${result.stoppedEarly}`);

    const files = options.out ? await writeClientReports(options.out, report) : null;
    return { report, files };
  } finally {
    await endRun(pool, createdKey);
  }
}

/** One line per second on stderr while the clients run. */
export function clientProgressLine(s: ClientSecond): string {
  const sum = (c: Record<string, number>) => Object.values(c).reduce((a, b) => a + b, 0);
  return `${String(s.t).padStart(4)}s  ${s.phase.padEnd(14)} offered ${String(s.offeredPerSec).padStart(6)}/s  tracked ${String(sum(s.tracked)).padStart(6)}  delivered ${String(sum(s.delivered)).padStart(6)}  p99 crit/norm/low ${[s.latency.critical.p99, s.latency.normal.p99, s.latency.low.p99].map((v) => Math.round(v)).join('/')} ms  req ${s.requests} (503 ${s.shed}, 429 ${s.rateLimited}, none ${s.errors}, held back ${s.throttled})  dropped ${sum(s.dropped)}  held ${s.held}`;
}

async function writeClientReports(out: string, report: ClientsReport): Promise<{ json: string; markdown: string }> {
  const { renderClientsMarkdown } = await import('./client-report.js');
  await mkdir(out, { recursive: true });
  const base = join(out, `clients-${report.runId}`);
  await writeFile(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(`${base}.md`, renderClientsMarkdown(report));
  return { json: `${base}.json`, markdown: `${base}.md` };
}
