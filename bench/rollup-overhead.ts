// The merge statement's own time per batch without rollups, with them in the statement and with the trigger:
// paired samples on one connection, each rolled back, timed in wall time and in the backend's CPU time.
import type { Pool } from '../lib/db.js';
import { CREATE_STAGING, MERGE_STAGING, STAGING, copyIntoStaging, writeEntries } from '../lib/pg-batch-write.js';
import type { StreamEntry } from '../lib/stream-entry.js';
import { uuidv7 } from '../lib/uuid7.js';
import { processCpuMicros } from './cpu.js';
import { PLAIN_MERGE, TRIGGER_SETUP, TRUNCATE, batchesFor, median, type Scenario } from './rollup-variants.js';

/** The merge statement's own time per batch, with and without each way of keeping rollups. */
export interface OverheadFigures {
  readonly scenario: string;
  /** Median wall time of the plain statement, and the median paired difference of each rollup variant. */
  readonly plainMs: number;
  readonly mergeMs: number;
  readonly triggerMs: number;
  /** Mean backend CPU time of the plain statement, and the mean difference of each rollup variant: CPU time is
   * not inflated by waiting for a core, and its 10 ms tick averages out over the samples. */
  readonly plainCpuMs: number;
  readonly mergeCpuMs: number;
  readonly triggerCpuMs: number;
  readonly samples: number;
}

/** The same entries with new event ids (the id is the first field of every COPY row). */
function withFreshIds(batch: readonly StreamEntry[]): StreamEntry[] {
  return batch.map((entry) => ({ ...entry, rows: entry.rows.replace(/^[0-9a-f-]{36}\t/gm, () => `${uuidv7()}\t`) }));
}

const pairedMedian = (xs: number[], ys: number[]) => median(xs.map((x, i) => x - ys[i]!));

/**
 * The statement alone, in isolation from COPY, commit and the rest of the machine's noise: each sample stages
 * the same batch three times in one database and times only the merge statement — plain, with the rollups in
 * the merge statement, plain with the trigger firing — rolling each back, so every sample starts from the same
 * state (rollup rows of those buckets already present, as in steady traffic). The figures are medians of the
 * per-sample differences against the plain statement.
 */
export async function measureRollupOverhead(pool: Pool, scenario: Scenario, events: number, samples: number): Promise<OverheadFigures> {
  const batches = batchesFor(scenario, events, 11);
  await pool.query(`${TRUNCATE}; ${TRIGGER_SETUP}`);
  // Rollup rows for every bucket the batches touch, then no events: each sample inserts all its events.
  await pool.query('ALTER TABLE events DISABLE TRIGGER bench_rollup');
  for (const batch of batches) await writeEntries(pool, batch);
  await pool.query('TRUNCATE events, idempotency_keys');
  await pool.query('ALTER TABLE events ENABLE TRIGGER bench_rollup');
  const client = await pool.connect();
  // Created once and committed, so that rolling a sample back does not drop it.
  await client.query(CREATE_STAGING);
  const times = { plain: [] as number[], merge: [] as number[], trigger: [] as number[] };
  const cpu = { plain: [] as number[], merge: [] as number[], trigger: [] as number[] };
  const { rows: self } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const backend = self[0]!.pid;
  try {
    for (let i = 0; i < samples; i++) {
      const order = (['plain', 'merge', 'trigger'] as const).map((_, k, all) => all[(i + k) % 3]!);
      // Rolled-back row versions of the last sample would slow this one down (the same keys again): vacuum them.
      await pool.query('VACUUM rollup_minute, rollup_hour, rollup_day');
      await pool.query('VACUUM events, idempotency_keys');
      for (const variant of order) {
        // Fresh event ids every time: re-inserting ids whose insert was rolled back costs more than a new id.
        const batch = withFreshIds(batches[i % batches.length]!);
        // A commit empties the staging table (ON COMMIT DELETE ROWS); a rollback leaves dead rows for the next scan.
        await client.query(`TRUNCATE ${STAGING}`);
        await client.query('BEGIN');
        // Triggers do not fire for a session in replica mode: the plain and merge samples run without it.
        if (variant !== 'trigger') await client.query("SET LOCAL session_replication_role = 'replica'");
        await copyIntoStaging(client, batch);
        const cpuBefore = processCpuMicros(backend) ?? 0;
        const started = performance.now();
        await client.query(variant === 'merge' ? MERGE_STAGING : PLAIN_MERGE);
        times[variant].push(performance.now() - started);
        cpu[variant].push(((processCpuMicros(backend) ?? 0) - cpuBefore) / 1000);
        await client.query('ROLLBACK');
      }
    }
  } finally {
    client.release();
    await pool.query(`DROP TRIGGER bench_rollup ON events; ${TRUNCATE}`);
  }
  const round = (x: number) => Math.round(x * 10) / 10;
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return {
    scenario: scenario.name,
    plainMs: round(median(times.plain)),
    mergeMs: round(pairedMedian(times.merge, times.plain)),
    triggerMs: round(pairedMedian(times.trigger, times.plain)),
    plainCpuMs: round(mean(cpu.plain)),
    mergeCpuMs: round(mean(cpu.merge) - mean(cpu.plain)),
    triggerCpuMs: round(mean(cpu.trigger) - mean(cpu.plain)),
    samples,
  };
}
