// What the rollups cost the worker: its own write path (writeEntries: COPY into the staging table, the merge
// statement, commit) with each way of keeping rollups, each variant in its own database, taking turns.
import type { Pool } from '../lib/db.js';
import { writeEntries } from '../lib/pg-batch-write.js';
import { processCpuMicros } from './cpu.js';
import { ALL_VARIANTS, TRUNCATE, batchesFor, median, minuteGroups, type Scenario } from './rollup-variants.js';

/** Events per second of one variant in one scenario (the steps after the warm-up), and the rollup rows per batch. */
export interface RollupCostRow {
  readonly scenario: string;
  readonly variant: string;
  readonly eventsPerSec: number;
  /** Median time of one step: one batch per writer, written at once. */
  readonly msPerBatch: number;
  /** CPU time of the database backends per 5000-event batch: what the variant costs Postgres itself, which the
   * other work on a shared machine disturbs far less than wall time. */
  readonly backendCpuMsPerBatch: number;
  readonly relative: number;
  readonly groupsPerBatch: number;
  /** For a variant whose coarser levels the maintenance loop rolls up: backend CPU of its passes (one every
   * ROLLUP_PASS_MS of the scenario, as the default ROLLUP_INTERVAL_MS runs them), per batch written; null otherwise. */
  readonly rollUpCpuMsPerBatch: number | null;
  /** How many roll-up passes ran, and the stale minutes they recomputed. */
  readonly rollUps: { passes: number; staleMinutes: number } | null;
  /** For a variant whose minute deltas the maintenance loop folds: backend CPU of its folds (one per
   * ROLLUP_FOLD_INTERVAL_MS of the variant's own write time), per batch written, and how many ran; null otherwise. */
  readonly foldCpuMsPerBatch: number | null;
  readonly folds: number | null;
}

/** The default ROLLUP_INTERVAL_MS, ROLLUP_LAG_MS and ROLLUP_FOLD_INTERVAL_MS (lib/config.ts). */
const ROLLUP_PASS_MS = 15_000;
const ROLLUP_LAG_MS = 120_000;
const FOLD_MS = 1_000;

/** One fold as the maintenance loop runs it; its backend CPU µs. */
async function foldPass(pool: Pool, pids: Set<number>): Promise<number> {
  const before = await backendCpu(pool, pids);
  await pool.query('SELECT floodgate_fold_rollups()');
  return (await backendCpu(pool, pids)) - before;
}

/** One roll-up pass as the maintenance loop runs it; its backend CPU µs and the stale minutes it recomputed. */
async function rollUpPass(pool: Pool, pids: Set<number>): Promise<{ cpu: number; stale: number }> {
  const before = await backendCpu(pool, pids);
  const { rows } = await pool.query<{ stale_minutes: number }>(
    "SELECT stale_minutes FROM floodgate_roll_up(now() - $1::float8 * interval '1 millisecond')",
    [ROLLUP_LAG_MS],
  );
  return { cpu: (await backendCpu(pool, pids)) - before, stale: rows[0]!.stale_minutes };
}

/** A variant's own database (created and migrated by the caller): the variants run side by side. */
export interface VariantDatabase {
  readonly pool: Pool;
}

/** CPU µs so far of every backend connected to the pool's database. */
async function backendCpu(pool: Pool, pids: Set<number>): Promise<number> {
  const { rows } = await pool.query<{ pid: number }>(
    'SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
  );
  for (const r of rows) pids.add(r.pid);
  const { rows: self } = await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  pids.add(self[0]!.pid);
  let total = 0;
  for (const pid of pids) total += processCpuMicros(pid) ?? 0;
  return total;
}

const WARM_UP_STEPS = 2;

/**
 * Writes `events` events per scenario through writeEntries with every variant, each into its own database. The
 * variants take turns batch by batch (in rotating order), so a burst of load from elsewhere on this shared
 * machine falls on all of them alike; the figure of a variant is the sum of its batch times after a warm-up.
 */
export async function measureRollupCost(
  databases: readonly VariantDatabase[],
  scenarios: readonly Scenario[],
  events: number,
  only: readonly number[] = ALL_VARIANTS.map((_, i) => i),
): Promise<RollupCostRow[]> {
  const variants = only.map((i) => ALL_VARIANTS[i]!);
  const rows: RollupCostRow[] = [];
  for (const [i, variant] of variants.entries()) if (variant.setup) await databases[i]!.pool.query(variant.setup);
  for (const scenario of scenarios) {
    const batches = batchesFor(scenario, events, 7);
    const steps = Math.floor(batches.length / scenario.writers);
    const seconds = variants.map(() => 0);
    const perBatch: number[][] = variants.map(() => []);
    const cpuMicros = variants.map(() => 0);
    const pids = variants.map(() => new Set<number>());
    let measuredEvents = 0;
    const rollUps = variants.map(() => ({ passes: 0, staleMinutes: 0, cpu: 0, last: performance.now() }));
    // Folds run once per FOLD_MS of the variant's own write time: as often, per batch, as a worker writing alone
    // at this rate would run them (the variants take turns, so wall time would fold each one too often).
    const folds = variants.map(() => ({ count: 0, cpu: 0, writtenMs: 0 }));
    for (const [i, variant] of variants.entries()) {
      await databases[i]!.pool.query(variant.tables ? `${TRUNCATE}, ${variant.tables}` : TRUNCATE);
      // The watermark where the maintenance loop keeps it: ROLLUP_LAG_MS behind now.
      if (variant.rollUp) await rollUpPass(databases[i]!.pool, pids[i]!);
    }
    for (let step = 0; step < steps; step++) {
      const group = batches.slice(step * scenario.writers, (step + 1) * scenario.writers);
      for (let k = 0; k < variants.length; k++) {
        const v = (step + k) % variants.length;
        const pool = databases[v]!.pool;
        const cpuBefore = await backendCpu(pool, pids[v]!);
        const started = performance.now();
        await Promise.all(group.map((batch) => writeEntries(pool, batch, { merge: variants[v]!.merge })));
        const elapsed = (performance.now() - started) / 1000;
        const cpu = (await backendCpu(pool, pids[v]!)) - cpuBefore;
        if (step >= WARM_UP_STEPS) {
          cpuMicros[v]! += cpu;
          seconds[v]! += elapsed;
          perBatch[v]!.push(elapsed * 1000);
        }
        const f = folds[v]!;
        f.writtenMs += elapsed * 1000;
        if (variants[v]!.fold && (f.writtenMs >= FOLD_MS || step === steps - 1)) {
          const cpuFold = await foldPass(pool, pids[v]!);
          f.writtenMs = 0;
          if (step >= WARM_UP_STEPS) {
            f.count++;
            f.cpu += cpuFold;
          }
        }
        const r = rollUps[v]!;
        if (variants[v]!.rollUp && (performance.now() - r.last >= ROLLUP_PASS_MS || step === steps - 1)) {
          const pass = await rollUpPass(pool, pids[v]!);
          r.last = performance.now();
          if (step >= WARM_UP_STEPS) {
            r.passes++;
            r.staleMinutes += pass.stale;
            r.cpu += pass.cpu;
          }
        }
      }
      if (step >= WARM_UP_STEPS) measuredEvents += group.reduce((n, b) => n + b.reduce((m, e) => m + e.count, 0), 0);
    }
    const groups = median(batches.map(minuteGroups));
    for (const [i, variant] of variants.entries()) {
      if (!variant.check) continue;
      const { rows: r } = await databases[i]!.pool.query<{ stored: string; counted: string }>(
        `SELECT (SELECT count(*) FROM events) AS stored, (SELECT sum(event_count) FROM ${variant.check}) AS counted`,
      );
      if (r[0]!.stored !== r[0]!.counted) throw new Error(`${variant.name}: rollups count ${r[0]!.counted}, events hold ${r[0]!.stored}`);
    }
    const base = measuredEvents / seconds[0]!;
    for (const [i, variant] of variants.entries()) {
      rows.push({
        scenario: scenario.name,
        variant: variant.name,
        eventsPerSec: Math.round(measuredEvents / seconds[i]!),
        msPerBatch: Math.round(median(perBatch[i]!) * 10) / 10,
        relative: Math.round((measuredEvents / seconds[i]! / base) * 1000) / 1000,
        groupsPerBatch: groups,
        backendCpuMsPerBatch: Math.round(cpuMicros[i]! / 1000 / ((steps - WARM_UP_STEPS) * scenario.writers)),
        rollUpCpuMsPerBatch: variant.rollUp
          ? Math.round((rollUps[i]!.cpu / 1000 / ((steps - WARM_UP_STEPS) * scenario.writers)) * 10) / 10
          : null,
        rollUps: variant.rollUp ? { passes: rollUps[i]!.passes, staleMinutes: rollUps[i]!.staleMinutes } : null,
        foldCpuMsPerBatch: variant.fold
          ? Math.round((folds[i]!.cpu / 1000 / ((steps - WARM_UP_STEPS) * scenario.writers)) * 10) / 10
          : null,
        folds: variant.fold ? folds[i]!.count : null,
      });
    }
    console.error(`rollup cost: ${scenario.name} done`);
  }
  for (const db of databases) await db.pool.query(TRUNCATE);
  return rows;
}
