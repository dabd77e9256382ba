import type { Pool } from './db.js';

/** What one roll-up pass did. */
export interface RollUpResult {
  /** Stale minutes (late events below the watermark) whose coarse buckets it recomputed. */
  readonly staleMinutes: number;
  /** The watermark it left: coarse rows now hold every minute before it (but the stale ones). */
  readonly watermark: Date;
}

/**
 * One roll-up pass (floodgate_roll_up, db/migrations/010_rollup_watermark.sql): recomputes the 5-minute, hour and
 * day buckets that late events made stale, then rolls the minutes from the watermark up to `lagMs` before the
 * database's clock into them and moves the watermark there. Readers are exact before, during and after (they
 * read the coarse rows below the watermark, the minute rows above it and the stale buckets from minutes).
 */
export async function rollUp(pool: Pool, lagMs: number): Promise<RollUpResult> {
  const { rows } = await pool.query<{ stale_minutes: number; watermark: Date }>(
    "SELECT stale_minutes, watermark FROM floodgate_roll_up(now() - $1::float8 * interval '1 millisecond')",
    [lagMs],
  );
  return { staleMinutes: rows[0]!.stale_minutes, watermark: rows[0]!.watermark };
}

/**
 * Folds the minute deltas that batch writes appended to rollup_pending into rollup_minute and deletes them, in one
 * transaction (floodgate_fold_rollups, db/migrations/011_rollup_pending.sql); returns how many pending rows it
 * folded. Readers are exact before, during and after (they add the pending rows to the minute rows).
 */
export async function foldRollups(pool: Pool): Promise<number> {
  const { rows } = await pool.query<{ folded: number }>('SELECT floodgate_fold_rollups() AS folded');
  return rows[0]!.folded;
}

/** The current roll-up watermark. */
export async function rollupWatermark(pool: Pool): Promise<Date> {
  const { rows } = await pool.query<{ upto: Date }>('SELECT upto FROM rollup_watermark');
  return rows[0]!.upto;
}
