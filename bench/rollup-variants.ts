// The ways of keeping rollups that bench:analytics compares, and the traffic it writes: batches of 5,000
// events (the worker's FLUSH_BATCH_EVENTS) generated like `floodgate loadtest` traffic.
import { parseCopyRows } from '../lib/copy-text.js';
import { checkEvent, type ValidEvent } from '../lib/event-schema.js';
import { INSERT_EVENTS_CTES, MERGE_STAGING, STALE_CTE, rollupCtes, rollupDeltaCtes } from '../lib/pg-batch-write.js';
import { decodeEntry, encodeEntry, type StreamEntry } from '../lib/stream-entry.js';
import { generateEvent, seededRandom } from '../loadtest/events.js';

const EVENTS_PER_ENTRY = 100;
const ENTRIES_PER_BATCH = 50; // 5000 events: the worker's default FLUSH_BATCH_EVENTS

/** One way of keeping rollups. */
export interface Variant {
  readonly name: string;
  readonly merge: string;
  /** Run once in the variant's own database. */
  readonly setup?: string;
  /** Tables of its own, emptied with the product's between scenarios. */
  readonly tables?: string;
  /** The rollup table whose event_count must add up to the rows stored (checked after each round). */
  readonly check?: string;
  /** Its coarser levels are rolled up by the maintenance loop: the watermark is put where it would be, and a pass timed. */
  readonly rollUp?: boolean;
  /** Its minute deltas are folded into rollup_minute by the maintenance loop: a fold is run and timed as it would be. */
  readonly fold?: boolean;
}

/** The merge statement without rollups: the baseline, and the statement the trigger variant runs. */
export const PLAIN_MERGE = `WITH ${INSERT_EVENTS_CTES} SELECT count(*)::int AS inserted FROM inserted`;

/** Every level (minute, 5 minutes, hour, day) upserted in the write's transaction: the design the roll-up replaced. */
const ALL_LEVELS = { dimensions: ['type'], tablePrefix: 'rollup', levels: 4 } as const;

/**
 * The alternative to the merge statement: a statement-level trigger reading the transition table (only the rows
 * the INSERT … ON CONFLICT DO NOTHING actually inserted), with the same aggregation and upserts of every level.
 */
export const TRIGGER_SETUP = `
CREATE OR REPLACE FUNCTION bench_rollup_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  WITH inserted AS (SELECT tenant, type, occurred_at, value FROM new_rows),
  ${rollupCtes(ALL_LEVELS)}
  SELECT count(*) INTO n FROM rollup_minute_delta;
  RETURN NULL;
END $$;
CREATE TRIGGER bench_rollup AFTER INSERT ON events REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION bench_rollup_trigger();`;

// The minute rollups with `source` as a second dimension, in a table of its own.
const SOURCE_TABLES = `
CREATE TABLE IF NOT EXISTS bench_src_minute (LIKE rollup_minute) PARTITION BY RANGE (bucket);
ALTER TABLE bench_src_minute ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT '';
CREATE UNIQUE INDEX IF NOT EXISTS bench_src_minute_key ON bench_src_minute (tenant, bucket, type, source);
DO $$ BEGIN
  FOR d IN -2..2 LOOP
    EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF bench_src_minute FOR VALUES FROM (%L) TO (%L)',
      'bench_src_minute_' || (d + 2), ((current_date + d)::timestamp AT TIME ZONE 'UTC'), ((current_date + d + 1)::timestamp AT TIME ZONE 'UTC'));
  END LOOP;
END $$;`;

const SOURCE_MERGE = `WITH ${INSERT_EVENTS_CTES.replace('RETURNING tenant, type, occurred_at, value', "RETURNING tenant, type, coalesce(source, '') AS source, occurred_at, value")},
${rollupCtes({ dimensions: ['type', 'source'], tablePrefix: 'bench_src', levels: 1 })}
SELECT coalesce(sum(event_count), 0)::int AS inserted FROM bench_src_minute_delta`;

const ALL_LEVELS_MERGE = `WITH ${INSERT_EVENTS_CTES},
${rollupCtes(ALL_LEVELS)}
SELECT coalesce(sum(event_count), 0)::int AS inserted FROM rollup_minute_delta`;

/** The minute level upserted in the write's transaction, the coarser ones by the roll-up: the design before rollup_pending. */
export const MINUTE_UPSERT_MERGE = `WITH ${INSERT_EVENTS_CTES},
${rollupCtes()},
${STALE_CTE}
SELECT coalesce(sum(event_count), 0)::int AS inserted FROM rollup_minute_delta`;

// Pending deltas one row per tenant × type × minute (rather than one row of arrays per tenant), with the index a
// reader of one tenant's range needs: the alternative to rollup_pending's shape. Written only (never folded).
const PENDING_ROWS_SETUP = `CREATE TABLE IF NOT EXISTS bench_pending (tenant text NOT NULL, bucket timestamptz NOT NULL, type text NOT NULL,
  event_count bigint NOT NULL, value_count bigint NOT NULL, value_sum float8 NOT NULL, value_min float8, value_max float8);
CREATE INDEX IF NOT EXISTS bench_pending_tb ON bench_pending (tenant, bucket)`;
const PENDING_ROWS_MERGE = `WITH ${INSERT_EVENTS_CTES},
${rollupDeltaCtes()},
p AS (INSERT INTO bench_pending SELECT tenant, bucket, type, event_count, value_count, value_sum, value_min, value_max FROM rollup_minute_delta),
${STALE_CTE}
SELECT coalesce(sum(event_count), 0)::int AS inserted FROM rollup_minute_delta`;

/** Every variant, the baseline first. */
export const ALL_VARIANTS: readonly Variant[] = [
  { name: 'no rollups', merge: PLAIN_MERGE },
  {
    name: 'minute deltas appended to rollup_pending, folded every second, coarser levels by roll-up',
    merge: MERGE_STAGING,
    check: 'rollup_minute_live',
    rollUp: true,
    fold: true,
  },
  { name: 'every level (minute, 5 min, hour, day) in the transaction', merge: ALL_LEVELS_MERGE, check: 'rollup_minute' },
  { name: 'trigger (every level)', merge: PLAIN_MERGE, setup: TRIGGER_SETUP, check: 'rollup_minute' },
  {
    name: 'minute in the transaction, type × source',
    merge: SOURCE_MERGE,
    setup: SOURCE_TABLES,
    tables: 'bench_src_minute',
    check: 'bench_src_minute',
  },
  {
    name: 'minute upserted in the transaction (before rollup_pending), coarser levels by roll-up',
    merge: MINUTE_UPSERT_MERGE,
    check: 'rollup_minute',
    rollUp: true,
  },
  {
    name: 'pending deltas one row per tenant × type × minute, indexed (written only)',
    merge: PENDING_ROWS_MERGE,
    setup: PENDING_ROWS_SETUP,
    tables: 'bench_pending',
  },
];

/** The traffic of one scenario: how many tenants, how far back timestamps spread, how many writers at once. */
export interface Scenario {
  readonly name: string;
  readonly tenants: number;
  readonly spreadMinutes: number;
  readonly writers: number;
  /** Pads each event's `data` to about this many bytes (0: the load test's own sizes, ~100 bytes). */
  readonly dataBytes?: number;
}

/** Distinct (tenant, type, minute) of a batch: the minute rollup rows its write upserts. */
export function minuteGroups(batch: readonly StreamEntry[]): number {
  const groups = new Set<string>();
  for (const entry of batch) {
    for (const row of parseCopyRows(entry.rows)) groups.add(`${row.tenant}\t${row.type}\t${Math.floor(row.occurredAt / 60_000)}`);
  }
  return groups.size;
}

/** The scenario's traffic as the worker would flush it: `events` events in batches of 50 entries of 100 events. */
export function batchesFor(scenario: Scenario, events: number, seed: number): StreamEntry[][] {
  const random = seededRandom(seed);
  const now = Date.now();
  const limits = { retentionDays: 30, maxEventDataBytes: 32 * 1024 };
  const entries: StreamEntry[] = [];
  for (let n = 0; n < events; n += EVENTS_PER_ENTRY) {
    const tenant = `tenant-${entries.length % scenario.tenants}`;
    const valid: ValidEvent[] = [];
    for (let i = 0; i < EVENTS_PER_ENTRY; i++) {
      const raw = generateEvent(random, n + i);
      if (scenario.dataBytes) raw.data.pad = 'x'.repeat(scenario.dataBytes);
      const timestamp = new Date(now - Math.floor(random() * scenario.spreadMinutes * 60_000)).toISOString();
      const check = checkEvent({ ...raw, timestamp }, now, limits);
      if (!check.ok) throw new Error(`generated an invalid event: ${JSON.stringify(check.errors)}`);
      valid.push(check.event);
    }
    entries.push(decodeEntry(encodeEntry(tenant, 'normal', now, valid)));
  }
  const batches: StreamEntry[][] = [];
  for (let i = 0; i < entries.length; i += ENTRIES_PER_BATCH) batches.push(entries.slice(i, i + ENTRIES_PER_BATCH));
  return batches;
}

/** Empties every table a variant writes to (the product's; a variant's own tables are named in `tables`). */
export const TRUNCATE =
  'TRUNCATE events, idempotency_keys, rollup_minute, rollup_pending, rollup_5m, rollup_hour, rollup_day, rollup_stale';

/** The median of a list (the upper one of an even count). */
export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
