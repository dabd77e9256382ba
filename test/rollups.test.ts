import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createPool } from '../lib/db.js';
import { checkEvent } from '../lib/event-schema.js';
import { createLogger } from '../lib/logger.js';
import { migrate, readMigrations } from '../lib/migrate.js';
import { dropExpiredPartitions, ensurePartitions } from '../lib/partitions.js';
import { writeEntries } from '../lib/pg-batch-write.js';
import { foldRollups, rollUp } from '../lib/rollup-maintenance.js';
import { ENTRY_FIELD, decodeEntry, encodeEntry, type StreamEntry } from '../lib/stream-entry.js';
import { Registry } from 'prom-client';
import { createFlusher } from '../workers/flusher.js';
import { createMaintenance } from '../workers/maintenance.js';
import { createWorkerMetrics } from '../workers/worker-metrics.js';
import { assertRollupsMatchEvents, rolledUpAndStored } from './rollup-support.js';
import { TEST_PG_ADMIN_URL, createTestEnv, enqueue, envVars, eventually, spawnFloodgate, type TestEnv } from './support.js';

const DAY = 86_400_000;
const TYPES = ['order.paid', 'order.refunded', 'page.view'];

interface EntryOptions {
  seed?: number;
  /** Timestamp of the first event (each next one a second later); receipt time by default. */
  at?: number;
  /** Idempotency keys `<prefix>-0` … `<prefix>-(n/2 - 1)`, each used twice. */
  keyPrefix?: string;
}

/** One stream entry's payload of `n` events; values are multiples of 0.25, so every sum is exact in floating point. */
function payload(env: TestEnv, tenant: string, n: number, options: EntryOptions = {}): string {
  const receivedAt = Date.now();
  const seed = options.seed ?? 0;
  const events = Array.from({ length: n }, (_, i) => {
    const raw: Record<string, unknown> = { type: TYPES[(seed + i) % TYPES.length], source: i % 2 ? 'web' : 'ios' };
    if ((seed + i) % 3 !== 0) raw.value = ((seed * 7 + i * 13) % 400) / 4 - 20;
    if (options.at !== undefined) raw.timestamp = new Date(options.at + i * 1000).toISOString();
    if (options.keyPrefix) raw.idempotency_key = `${options.keyPrefix}-${i % Math.max(1, Math.floor(n / 2))}`;
    const check = checkEvent(raw, receivedAt, env.config);
    if (!check.ok) throw new Error(JSON.stringify(check.errors));
    return check.event;
  });
  return encodeEntry(tenant, 'normal', receivedAt, events);
}

/** The decoded entry, as the worker holds it. */
function entry(env: TestEnv, tenant: string, n: number, options: EntryOptions = {}): StreamEntry {
  return decodeEntry(payload(env, tenant, n, options));
}

describe('rollups', () => {
  let env: TestEnv;
  before(async () => {
    env = await createTestEnv({ FLUSH_BATCH_EVENTS: '400', FLUSH_INTERVAL_MS: '20', CLAIM_IDLE_MS: '500' });
  });
  after(async () => {
    await env?.cleanup();
  });

  it('counts a redelivered entry, a duplicate in the same batch and a repeated idempotency key once, at every level', async () => {
    const first = entry(env, 'dup', 60, { keyPrefix: 'k' });
    const again = entry(env, 'dup', 40, { seed: 1, keyPrefix: 'k' });
    const plain = entry(env, 'dup', 50, { seed: 2 });
    const r1 = await writeEntries(env.pool, [first, plain, plain]);
    assert.equal(r1.inserted, 30 + 50, 'half of the keyed events repeat a key; the second copy of the entry adds nothing');
    const r2 = await writeEntries(env.pool, [plain, first, again]);
    assert.equal(r2.inserted, 0, 'everything was stored already (same ids, same keys)');
    const { rolledUp, stored } = await rolledUpAndStored(env.pool, 'dup');
    assert.equal(stored, 80);
    assert.equal(rolledUp, 80);
    await assertRollupsMatchEvents(env.pool);
  });

  it('counts nothing of a write that failed after its merge had run, and exactly once when it is retried', async () => {
    const batch = [entry(env, 'retry', 30), entry(env, 'retry', 30, { seed: 5 })];
    // The statement times out waiting for the stale-minute ledger it names; whatever it wrote must go.
    const lock = await env.pool.connect();
    await lock.query('BEGIN');
    await lock.query('LOCK TABLE rollup_stale IN EXCLUSIVE MODE');
    try {
      await assert.rejects(writeEntries(env.pool, batch, { statementTimeoutMs: 300 }), { code: '57014' });
    } finally {
      await lock.query('ROLLBACK');
      lock.release();
    }
    assert.deepEqual(await rolledUpAndStored(env.pool, 'retry'), { rolledUp: 0, stored: 0 });
    assert.equal((await writeEntries(env.pool, batch)).inserted, 60);
    assert.equal((await writeEntries(env.pool, batch)).inserted, 0, 'a retried COPY of rows already committed');
    assert.deepEqual(await rolledUpAndStored(env.pool, 'retry'), { rolledUp: 60, stored: 60 });
    await assertRollupsMatchEvents(env.pool);
  });

  it('stays exact with writers adding to the same buckets and the same events at once, and folds and roll-ups between them: no deadlock, no lost update', async () => {
    const pools = Array.from({ length: 4 }, () => createPool(env.databaseUrl, { max: 2, applicationName: 'floodgate-test' }));
    try {
      // Every batch hits the same tenant × type × minute rows; half the batches are written by two writers at once.
      const at = Date.now() - 5 * 60_000;
      const batches = Array.from({ length: 24 }, (_, i) => [
        entry(env, 'race', 120, { seed: i, at }),
        entry(env, 'race', 80, { seed: 100 + i, at, keyPrefix: `race-${i % 6}` }),
      ]);
      const work = pools.map(async (pool, w) => {
        const inserted: number[] = [];
        for (let i = 0; i < batches.length; i++) {
          if (i % 4 === w || (i % 2 === 0 && (i + 1) % 4 === w)) inserted.push((await writeEntries(pool, batches[i]!)).inserted);
        }
        return inserted;
      });
      // Roll-ups (each folding first) and folds of their own run all the while (the events are five minutes old:
      // below the watermark, so every write also marks its minutes stale and every pass recomputes them).
      let writing = true;
      let passes = 0;
      let folds = 0;
      const rolling = (async () => {
        while (writing) {
          await rollUp(env.pool, 0);
          passes++;
        }
      })();
      const folding = (async () => {
        while (writing) {
          await foldRollups(env.pool);
          folds++;
        }
      })();
      const results = await Promise.all(work).finally(() => {
        writing = false;
      });
      await Promise.all([rolling, folding]);
      assert.ok(passes > 1, 'roll-ups ran during the writes');
      assert.ok(folds > 1, 'folds ran during the writes');
      const distinctKeyed = 6 * 40;
      const expected = 24 * 120 + distinctKeyed;
      assert.equal(
        results.flat().reduce((a, b) => a + b, 0),
        expected,
        'the writers together inserted each event once',
      );
      assert.deepEqual(await rolledUpAndStored(env.pool, 'race'), { rolledUp: expected, stored: expected });
      await assertRollupsMatchEvents(env.pool);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  it('keeps the minute deltas of a write pending until a fold adds them to rollup_minute: exact before, after, and when a fold fails', async () => {
    await foldRollups(env.pool);
    const at = Date.now() - 30_000;
    await writeEntries(env.pool, [entry(env, 'pending', 40, { at }), entry(env, 'other', 10, { at, seed: 3 })]);
    await writeEntries(env.pool, [entry(env, 'pending', 20, { at, seed: 1 })]);
    const counts = async () => {
      const { rows } = await env.pool.query<{ pending: string; minute: string | null }>(
        `SELECT (SELECT count(*) FROM rollup_pending WHERE tenant = 'pending') AS pending,
                (SELECT sum(event_count) FROM rollup_minute WHERE tenant = 'pending') AS minute`,
      );
      return { pending: Number(rows[0]!.pending), minute: Number(rows[0]!.minute ?? 0) };
    };
    assert.deepEqual(await counts(), { pending: 2, minute: 0 }, 'one pending row per tenant and write; rollup_minute untouched');
    assert.deepEqual(await rolledUpAndStored(env.pool, 'pending'), { rolledUp: 60, stored: 60 });
    await assertRollupsMatchEvents(env.pool, 'deltas pending');
    // A fold that fails (here: its statement times out behind a lock on rollup_minute) leaves the deltas pending.
    const lock = await env.pool.connect();
    const impatient = createPool(env.databaseUrl, { max: 1, applicationName: 'floodgate-test', statementTimeoutMs: 300 });
    try {
      await lock.query('BEGIN');
      await lock.query('LOCK TABLE rollup_minute IN EXCLUSIVE MODE');
      await assert.rejects(foldRollups(impatient), { code: '57014' });
    } finally {
      await lock.query('ROLLBACK');
      lock.release();
      await impatient.end();
    }
    assert.deepEqual(await counts(), { pending: 2, minute: 0 }, 'the failed fold changed nothing');
    await assertRollupsMatchEvents(env.pool, 'after a failed fold');
    assert.ok((await foldRollups(env.pool)) >= 3, 'the fold takes every pending row, of every tenant');
    assert.deepEqual(await counts(), { pending: 0, minute: 60 });
    assert.equal(await foldRollups(env.pool), 0, 'nothing left to fold');
    assert.deepEqual(await rolledUpAndStored(env.pool, 'pending'), { rolledUp: 60, stored: 60 });
    await assertRollupsMatchEvents(env.pool, 'after the fold');
  });

  it('the maintenance loop folds pending deltas on its own timer', async () => {
    const pending = async () =>
      Number((await env.pool.query<{ n: string }>("SELECT count(*) AS n FROM rollup_pending WHERE tenant = 'timer'")).rows[0]!.n);
    // The roll-up, which folds too, runs once at start and then not for an hour: what is written after the start
    // can only be folded by the fold timer.
    const registry = new Registry();
    const metrics = createWorkerMetrics(registry);
    const maintenance = createMaintenance({
      config: env.config,
      pool: env.pool,
      logger: createLogger('silent', 'test'),
      rollupIntervalMs: 3_600_000,
      foldIntervalMs: 50,
      metrics,
    });
    try {
      await maintenance.start();
      await writeEntries(env.pool, [entry(env, 'timer', 30, { at: Date.now() - 10_000 })]);
      await eventually(async () => (await pending()) === 0, 'folded by the timer');
    } finally {
      await maintenance.close();
    }
    const { rows } = await env.pool.query<{ n: string }>("SELECT sum(event_count) AS n FROM rollup_minute WHERE tenant = 'timer'");
    assert.equal(Number(rows[0]!.n), 30);
    await assertRollupsMatchEvents(env.pool);
    // What an operator sees: folds and the start's roll-up succeeded, at least the one pending row was folded,
    // and the watermark is the one the roll-up left.
    const runs = await metricValues(registry, 'floodgate_rollup_maintenance_runs_total');
    assert.ok(runs['task=fold,outcome=ok']! >= 1, 'folds recorded');
    assert.equal(runs['task=fold,outcome=error'], 0);
    assert.equal(runs['task=rollup,outcome=ok'], 1);
    assert.ok((await metricValues(registry, 'floodgate_rollup_pending_rows_folded_total'))['']! >= 1);
    const { rows: mark } = await env.pool.query<{ upto: Date }>('SELECT upto FROM rollup_watermark');
    assert.equal((await metricValues(registry, 'floodgate_rollup_watermark_timestamp_seconds'))[''], mark[0]!.upto.getTime() / 1000);
  });

  it('the maintenance loop records a failed fold and roll-up as errors, and raises no success time for them', async () => {
    const registry = new Registry();
    const metrics = createWorkerMetrics(registry);
    // A pool whose every query fails, as with Postgres down.
    const broken = createPool('postgres://postgres@127.0.0.1:1/none', { max: 1, applicationName: 'floodgate-test' });
    const maintenance = createMaintenance({ config: env.config, pool: broken, logger: createLogger('silent', 'test'), metrics });
    try {
      await assert.rejects(maintenance.foldOnce());
      await assert.rejects(maintenance.rollUpOnce());
    } finally {
      await maintenance.close();
      await broken.end();
    }
    const runs = await metricValues(registry, 'floodgate_rollup_maintenance_runs_total');
    assert.deepEqual(runs, {
      'task=fold,outcome=ok': 0,
      'task=fold,outcome=error': 1,
      'task=rollup,outcome=ok': 0,
      'task=rollup,outcome=error': 1,
    });
    assert.deepEqual(await metricValues(registry, 'floodgate_rollup_maintenance_last_success_timestamp_seconds'), {});
  });

  it('puts a late event within retention into the minute, 5 minutes, hour and day it occurred in, before and after the roll-up', async () => {
    const midnight = Math.floor((Date.now() - 3 * DAY) / DAY) * DAY;
    const when = midnight + 13 * 3600_000 + 37 * 60_000 + 42_000;
    await rollUp(env.pool, 0);
    await writeEntries(env.pool, [entry(env, 'late', 1, { at: when })]);
    const minute = new Date(midnight + 13 * 3600_000 + 37 * 60_000);
    const expected = {
      rollup_minute: minute,
      rollup_5m: new Date(midnight + 13 * 3600_000 + 35 * 60_000),
      rollup_hour: new Date(midnight + 13 * 3600_000),
      rollup_day: new Date(midnight),
    };
    const read = async (table: string) => {
      const { rows } = await env.pool.query<{ bucket: Date; event_count: string }>(
        `SELECT bucket, sum(event_count) AS event_count FROM ${table} WHERE tenant = 'late' GROUP BY 1 ORDER BY 1`,
      );
      return rows.map((r) => [r.bucket.toISOString(), Number(r.event_count)]);
    };
    // Below the watermark: the minute is exact at once and marked stale; readers take its buckets from minutes.
    const { rows: stale } = await env.pool.query<{ bucket: Date }>("SELECT bucket FROM rollup_stale WHERE tenant = 'late'");
    assert.deepEqual(
      stale.map((r) => r.bucket.toISOString()),
      [minute.toISOString()],
    );
    for (const [table, bucket] of Object.entries(expected)) {
      const view = `${table}_live`;
      assert.deepEqual(await read(view), [[bucket.toISOString(), 1]], view);
    }
    await assertRollupsMatchEvents(env.pool, 'late event, before the roll-up');
    // The roll-up recomputes exactly the stale buckets: the stored coarse rows hold it, the ledger is empty.
    assert.equal((await rollUp(env.pool, 0)).staleMinutes, 1);
    for (const [table, bucket] of Object.entries(expected)) assert.deepEqual(await read(table), [[bucket.toISOString(), 1]], table);
    assert.equal((await env.pool.query("SELECT 1 FROM rollup_stale WHERE tenant = 'late'")).rowCount, 0);
    await assertRollupsMatchEvents(env.pool, 'late event, after the roll-up');
    // A second late event in the same hour but another 5 minutes adds to what was rolled up.
    await writeEntries(env.pool, [entry(env, 'late', 1, { at: when + 9 * 60_000, seed: 1 })]);
    await assertRollupsMatchEvents(env.pool, 'second late event, before the roll-up');
    await rollUp(env.pool, 0);
    assert.deepEqual(await read('rollup_hour'), [[expected.rollup_hour.toISOString(), 2]]);
    await assertRollupsMatchEvents(env.pool, 'second late event, after the roll-up');
  });

  it('stays exact across the watermark: minutes above it, buckets it splits, the roll-up moving it over midnight', async () => {
    // Events every 20 s over the 40 minutes around the last UTC midnight; the watermark starts inside a 5-minute
    // bucket and an hour of the day before, then moves across midnight while late events keep arriving.
    const midnight = Math.floor(Date.now() / DAY) * DAY;
    const start = midnight - 20 * 60_000;
    const batch = (seed: number) =>
      Array.from({ length: 4 }, (_, k) => entry(env, 'edge', 30, { at: start + k * 600_000 + seed * 7_000, seed: seed * 10 + k }));
    await rollUp(env.pool, 0);
    // Put the watermark back by hand and rebuild the coarse rows below it (a fresh database's watermark is the
    // minute its migration ran).
    const mark = midnight - 7 * 60_000;
    await env.pool.query('UPDATE rollup_watermark SET upto = $1', [new Date(mark)]);
    await env.pool.query("SELECT floodgate_reroll($1::timestamptz - interval '40 days', $1::timestamptz + interval '2 days')", [
      new Date(midnight),
    ]);
    await assertRollupsMatchEvents(env.pool, 'watermark put back');
    await writeEntries(env.pool, batch(0));
    await assertRollupsMatchEvents(env.pool, 'events on both sides of the watermark and of midnight');
    for (const [i, target] of [midnight - 3 * 60_000, midnight + 2 * 60_000, midnight + 11 * 60_000].entries()) {
      const { rows } = await env.pool.query<{ watermark: Date }>('SELECT watermark FROM floodgate_roll_up($1)', [new Date(target)]);
      assert.equal(rows[0]!.watermark.getTime(), target);
      await assertRollupsMatchEvents(env.pool, `watermark at ${new Date(target).toISOString()}`);
      await writeEntries(env.pool, batch(i + 1));
      await assertRollupsMatchEvents(env.pool, `late events under the watermark at ${new Date(target).toISOString()}`);
    }
    const { rows: back } = await env.pool.query<{ watermark: Date }>('SELECT watermark FROM floodgate_roll_up($1)', [new Date(mark)]);
    assert.equal(back[0]!.watermark.getTime(), midnight + 11 * 60_000, 'the watermark never moves back');
    const { rows } = await env.pool.query<{ n: string }>("SELECT count(*) AS n FROM rollup_stale WHERE tenant = 'edge'");
    assert.equal(Number(rows[0]!.n), 0, 'that pass recomputed the stale buckets');
    await writeEntries(env.pool, batch(9));
    await rollUp(env.pool, 0);
    await assertRollupsMatchEvents(env.pool, 'after the last roll-up');
  });

  it('drops the rollups of a day when retention drops its events, and keeps the other days', async () => {
    const now = Date.now();
    await writeEntries(env.pool, [
      entry(env, 'retention', 10, { at: now - 20 * DAY }),
      entry(env, 'retention', 10, { at: now - 2 * DAY, seed: 1 }),
    ]);
    const day = (ms: number) => new Date(ms).toISOString().slice(0, 10).replace(/-/g, '');
    assert.ok(
      await partitionExists(env, `rollup_minute_p${day(now - 20 * DAY)}`),
      'minute partitions are created with the events partitions',
    );
    // The old day's first events rolled up, a later one still stale when the day is dropped: both kinds must go.
    await rollUp(env.pool, 0);
    await writeEntries(env.pool, [entry(env, 'retention', 3, { at: now - 20 * DAY + 60_000, seed: 2 })]);
    // Fifteen days on, the day 20 days back is past the 30-day retention (plus a day of slack).
    const dropped = await dropExpiredPartitions(env.pool, env.config, now + 15 * DAY);
    assert.ok(dropped.includes(`events_p${day(now - 20 * DAY)}`));
    assert.ok(dropped.includes(`rollup_minute_p${day(now - 20 * DAY)}`));
    assert.ok(!(await partitionExists(env, `rollup_minute_p${day(now - 20 * DAY)}`)));
    const cutoff = Math.floor((now - 16 * DAY) / DAY) * DAY;
    for (const table of [
      'rollup_minute',
      'rollup_minute_live',
      'rollup_5m',
      'rollup_hour',
      'rollup_day',
      'rollup_5m_live',
      'rollup_hour_live',
      'rollup_day_live',
    ]) {
      const { rows } = await env.pool.query<{ old: string; kept: string }>(
        `SELECT count(*) FILTER (WHERE bucket < $1) AS old, coalesce(sum(event_count) FILTER (WHERE bucket >= $1), 0) AS kept FROM ${table} WHERE tenant = 'retention'`,
        [new Date(cutoff)],
      );
      assert.equal(Number(rows[0]!.old), 0, `${table}: rows of the dropped day are gone`);
      assert.equal(Number(rows[0]!.kept), 10, `${table}: the day within retention keeps its rows`);
    }
    assert.equal((await env.pool.query("SELECT 1 FROM rollup_stale WHERE tenant = 'retention'")).rowCount, 0, 'no stale minute left');
    await assertRollupsMatchEvents(env.pool);
    await ensurePartitions(env.pool, env.config);
  });

  it('rebuilding a day from events reproduces what the writes and roll-ups maintained', async () => {
    await writeEntries(env.pool, [entry(env, 'rebuild', 90), entry(env, 'rebuild', 45, { seed: 9, keyPrefix: 'rb' })]);
    await writeEntries(env.pool, [entry(env, 'rebuild', 20, { seed: 4, at: Date.now() - 2 * DAY })]);
    const snapshot = async () =>
      Promise.all(
        ['rollup_minute_live', 'rollup_5m_live', 'rollup_hour_live', 'rollup_day_live'].map(
          async (table) => (await env.pool.query(`SELECT * FROM ${table} ORDER BY tenant, bucket, type`)).rows,
        ),
      );
    const before = await snapshot();
    const today = new Date().toISOString().slice(0, 10);
    await env.pool.query('SELECT floodgate_rebuild_rollups($1::date - 40, $1::date + 3)', [today]);
    assert.deepEqual(await snapshot(), before);
    assert.equal((await env.pool.query('SELECT 1 FROM rollup_stale')).rowCount, 0, 'a rebuild leaves nothing stale');
    await assertRollupsMatchEvents(env.pool);
    await rollUp(env.pool, 0);
    assert.deepEqual(await snapshot(), before);
  });

  it('through the flush worker: entries put on the stream again are not counted again; the worker reports the newest minute', async () => {
    const registry = new Registry();
    const metrics = createWorkerMetrics(registry);
    const flusher = createFlusher({
      config: env.config,
      pool: env.pool,
      redis: env.redis,
      logger: createLogger('silent', 'test'),
      consumerName: 'rollup-test',
      metrics,
    });
    await flusher.start();
    try {
      const payloads = Array.from({ length: 12 }, (_, i) =>
        payload(env, 'stream', 50, { seed: i, keyPrefix: i % 3 ? undefined : `s${i}` }),
      );
      for (const p of payloads) await env.redis.xadd(env.config.streamKey, '*', ENTRY_FIELD, p);
      // The same payloads again, as a producer retry or a replayed stream would deliver them.
      for (const p of payloads.slice(0, 6)) await env.redis.xadd(env.config.streamKey, '*', ENTRY_FIELD, p);
      await eventually(async () => (await env.redis.xlen(env.config.streamKey)) === 0, 'stream drained');
      const { rolledUp, stored } = await rolledUpAndStored(env.pool, 'stream');
      assert.equal(stored, 12 * 50 - 4 * 25);
      assert.equal(rolledUp, stored);
      await assertRollupsMatchEvents(env.pool);
      const { rows } = await env.pool.query<{ newest: Date }>(
        "SELECT max(bucket) AS newest FROM rollup_minute_live WHERE tenant = 'stream'",
      );
      const gauge = await registry.getSingleMetric('floodgate_rollup_newest_minute_timestamp_seconds')!.get();
      assert.equal(gauge.values[0]!.value, rows[0]!.newest.getTime() / 1000);
    } finally {
      await flusher.close();
    }
  });

  it('a worker killed with SIGKILL inside its flush transaction leaves nothing counted; its successor counts each event once', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) {
      ids.push(
        ...(await enqueue(
          env,
          Array.from({ length: 40 }, (_, j) => ({
            type: TYPES[j % 3]!,
            value: j,
            ...(j % 4 ? {} : { idempotency_key: `kill-${i}-${j}` }),
          })),
          { tenant: 'killed' },
        )),
      );
    }
    const lock = await env.pool.connect();
    await lock.query('BEGIN');
    await lock.query('LOCK TABLE events IN SHARE MODE');
    const vars = envVars(env, { CLAIM_IDLE_MS: '500', FLUSH_INTERVAL_MS: '20' });
    const doomed = await spawnFloodgate(['worker'], vars);
    try {
      await eventually(async () => {
        const { rows } = await env.pool.query(
          "SELECT 1 FROM pg_stat_activity WHERE application_name = 'floodgate-worker' AND wait_event_type = 'Lock' AND datname = current_database() AND query LIKE '%INSERT INTO events%'",
        );
        return rows.length > 0;
      }, 'the worker blocked inside its flush');
      doomed.child.kill('SIGKILL');
      await doomed.exited;
    } finally {
      await lock.query('ROLLBACK');
      lock.release();
    }
    assert.deepEqual(await rolledUpAndStored(env.pool, 'killed'), { rolledUp: 0, stored: 0 });
    const successor = await spawnFloodgate(['worker'], vars);
    try {
      await eventually(
        async () =>
          (await rolledUpAndStored(env.pool, 'killed')).stored >= ids.length && (await env.redis.xlen(env.config.streamKey)) === 0,
        'all written',
        30_000,
      );
    } finally {
      successor.child.kill('SIGTERM');
      await successor.exited;
    }
    assert.deepEqual(await rolledUpAndStored(env.pool, 'killed'), { rolledUp: ids.length, stored: ids.length });
    await assertRollupsMatchEvents(env.pool);
  });
});

async function partitionExists(env: TestEnv, name: string): Promise<boolean> {
  const { rows } = await env.pool.query<{ r: string | null }>('SELECT to_regclass($1) AS r', [name]);
  return rows[0]!.r !== null;
}

describe('rollups migration', () => {
  it('backfills the rollups of events stored before it, partitions included', async () => {
    const dbName = `floodgate_test_backfill_${Date.now().toString(36)}`;
    const admin = new pg.Client({ connectionString: TEST_PG_ADMIN_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${dbName}`);
    const pool = createPool(Object.assign(new URL(TEST_PG_ADMIN_URL), { pathname: `/${dbName}` }).href, {
      applicationName: 'floodgate-test',
    });
    try {
      const all = await readMigrations();
      await migrate(
        pool,
        all.filter((m) => m.version < 6),
      );
      await pool.query('SELECT floodgate_create_partitions(current_date - 3, current_date + 1)');
      await pool.query(`
        INSERT INTO events (id, tenant, type, occurred_at, received_at, priority, value)
        SELECT gen_random_uuid(), 'old-' || (i % 3), 'type.' || (i % 5), now() - (i % 4000) * interval '1 minute', now(), 'normal',
               CASE WHEN i % 2 = 0 THEN (i % 97) / 4.0 END
        FROM generate_series(1, 5000) i`);
      await migrate(pool, all);
      const { rows } = await pool.query<{ n: string }>('SELECT sum(event_count) AS n FROM rollup_day_live');
      assert.equal(Number(rows[0]!.n), 5000);
      // The hour and day rows of migration 006 held every minute; 010 keeps in them only the minutes below its
      // watermark, and builds the 5-minute rows the same way.
      const { rows: below } = await pool.query<{ day: string; minute: string }>(
        `SELECT (SELECT sum(event_count) FROM rollup_day) AS day,
                (SELECT sum(event_count) FROM rollup_minute WHERE bucket < (SELECT upto FROM rollup_watermark)) AS minute`,
      );
      assert.equal(below[0]!.day, below[0]!.minute);
      await assertRollupsMatchEvents(pool, 'after the backfill');
    } finally {
      await pool.end();
      await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
      await admin.end();
    }
  });
});

/** A metric's values by their labels written `name=value,…` (`''` for none). */
async function metricValues(registry: Registry, name: string): Promise<Record<string, number>> {
  const metric = await registry.getSingleMetric(name)!.get();
  return Object.fromEntries(
    metric.values.map((v) => [
      Object.entries(v.labels)
        .map(([k, l]) => `${k}=${String(l)}`)
        .join(','),
      v.value,
    ]),
  );
}
