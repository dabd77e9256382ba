// What the pending minute deltas (rollup_pending) cost a stats read: one tenant's answers with a second's worth of
// unfolded writes of the 20-tenant scenario pending, next to the same answers once folded.
import type { Pool } from '../lib/db.js';
import { writeEntries } from '../lib/pg-batch-write.js';
import { foldRollups } from '../lib/rollup-maintenance.js';
import { planStats, readStats, type StatsRequest } from '../lib/stats-query.js';
import { TRUNCATE, batchesFor, median, type Scenario } from './rollup-variants.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** One stats question's median latency with the writes pending and once folded. */
export interface PendingReadFigure {
  readonly name: string;
  readonly pendingMs: number;
  readonly foldedMs: number;
}

/**
 * The cells of a series with every number to 12 significant digits: counts, minima and maxima are exact either
 * way, but sums of floating-point values added in another order (per batch, then per fold) may differ in the last
 * bits, as any two orders of the same sum may.
 */
const rounded = (cells: string) => cells.replace(/-?[0-9][0-9.e+-]*/g, (x) => String(Number(Number(x).toPrecision(12))));

const QUESTIONS: [string, Omit<StatsRequest, 'tenant' | 'aggregates'>][] = [
  ['stats 1h, step 1m, type=page.*', { windowMs: HOUR, stepMs: MINUTE, type: { prefix: 'page.' }, groupBy: null }],
  ['stats 24h, step 5m, group_by=type', { windowMs: DAY, stepMs: 5 * MINUTE, type: null, groupBy: 'type' }],
  ['stats 7d, step 1h, group_by=type', { windowMs: 7 * DAY, stepMs: HOUR, type: null, groupBy: 'type' }],
];

/**
 * Writes `batches` batches of `scenario` through writeEntries without folding (what a second of writes at the
 * write path's rate leaves pending between two folds), times each question for tenant-3 `runs` times, folds, and
 * times them again; also checks that both answers are the same.
 */
export async function measurePendingReads(
  pool: Pool,
  scenario: Scenario,
  options: { batches: number; runs: number; retentionDays: number; maxPoints: number },
): Promise<{ pendingRows: number; pendingDeltas: number; figures: PendingReadFigure[] }> {
  await pool.query(TRUNCATE);
  for (const batch of batchesFor(scenario, options.batches * 5000, 13)) await writeEntries(pool, batch);
  const { rows } = await pool.query<{ n: string; d: string }>(
    'SELECT count(*) AS n, coalesce(sum(cardinality(buckets)), 0) AS d FROM rollup_pending',
  );
  const now = Date.now();
  const read = { now, retentionDays: options.retentionDays, maxPoints: options.maxPoints };
  const measure = async () => {
    const out: { ms: number; answer: string }[] = [];
    for (const [, partial] of QUESTIONS) {
      const request: StatsRequest = { ...partial, tenant: 'tenant-3', aggregates: ['count', 'sum', 'avg', 'min', 'max'] };
      const plan = planStats(request, now);
      const times: number[] = [];
      let answer = '';
      for (let i = 0; i < options.runs; i++) {
        const started = performance.now();
        const data = await readStats(pool, request, plan, read);
        times.push(performance.now() - started);
        answer = JSON.stringify([data.newestMinute, [...data.groups].map(([g, cells]) => [g, rounded(cells)])]);
      }
      out.push({ ms: Math.round(median(times) * 100) / 100, answer });
    }
    return out;
  };
  const pending = await measure();
  await foldRollups(pool);
  const folded = await measure();
  const figures = QUESTIONS.map(([name], i) => {
    if (pending[i]!.answer !== folded[i]!.answer) throw new Error(`${name}: the answer changed with the fold`);
    return { name, pendingMs: pending[i]!.ms, foldedMs: folded[i]!.ms };
  });
  await pool.query(TRUNCATE);
  return { pendingRows: Number(rows[0]!.n), pendingDeltas: Number(rows[0]!.d), figures };
}
