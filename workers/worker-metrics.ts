import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { LATENCY_BUCKETS } from '../lib/metrics.js';

/** The maintenance loop's rollup tasks: the fold of pending minute deltas, and the roll-up into coarser levels. */
export type RollupTask = 'fold' | 'rollup';

/** What the flush worker measures; one instance per worker process. */
export interface WorkerMetrics {
  readonly flushDuration: Histogram<'outcome'>;
  readonly batchEvents: Histogram;
  readonly rowsWritten: Counter;
  readonly duplicatesDropped: Counter;
  readonly entriesRead: Counter;
  readonly entriesReclaimed: Counter;
  readonly flushErrors: Counter<'kind'>;
  readonly deadLettered: Counter<'reason'>;
  readonly bufferedEvents: Gauge;
  /** Receive time at the API → commit in Postgres, per event: the figure that matters most. */
  readonly timeToDurable: Histogram;
  /** QUEUE=postgres: time to claim one batch of queue rows (FOR UPDATE SKIP LOCKED). */
  readonly pgQueueClaimDuration: Histogram;
  /** Raises floodgate_rollup_newest_minute_timestamp_seconds to a minute (epoch ms) this worker just committed. */
  noteRollupMinute(minuteMs: number): void;
  /**
   * Records one fold or roll-up: its outcome, and on success when it ended, the pending rows a fold folded and the
   * watermark a roll-up left.
   */
  noteRollupTask(task: RollupTask, outcome: { ok: boolean; folded?: number; watermark?: Date }): void;
}

/** Creates the worker's metrics in `registry`. */
export function createWorkerMetrics(registry: Registry): WorkerMetrics {
  const registers = [registry];
  const rollupNewestMinute = new Gauge({
    name: 'floodgate_rollup_newest_minute_timestamp_seconds',
    help: 'Start of the newest minute (not in the future) this worker added events to the rollups for. Rollups commit with their events, so time() minus this is how stale the newest rolled-up minute is.',
    registers,
  });
  let newestMinuteMs = 0;
  const rollupRuns = new Counter({
    name: 'floodgate_rollup_maintenance_runs_total',
    help: 'Folds of pending minute deltas (task="fold") and roll-ups into the coarser levels (task="rollup") this worker ran, by outcome.',
    labelNames: ['task', 'outcome'],
    registers,
  });
  const rollupLastSuccess = new Gauge({
    name: 'floodgate_rollup_maintenance_last_success_timestamp_seconds',
    help: 'When this worker last finished a fold (task="fold") or a roll-up (task="rollup") without error.',
    labelNames: ['task'],
    registers,
  });
  const rollupFolded = new Counter({
    name: 'floodgate_rollup_pending_rows_folded_total',
    help: 'Rows of rollup_pending (one per tenant per written batch) this worker folded into the minute rollups.',
    registers,
  });
  const rollupWatermark = new Gauge({
    name: 'floodgate_rollup_watermark_timestamp_seconds',
    help: 'The roll-up watermark this worker last left: the coarse levels hold every minute before it.',
    registers,
  });
  const metrics: WorkerMetrics = {
    flushDuration: new Histogram({
      name: 'floodgate_worker_flush_duration_seconds',
      help: 'Time to write one batch (COPY, insert, commit), by outcome.',
      labelNames: ['outcome'],
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    batchEvents: new Histogram({
      name: 'floodgate_worker_batch_events',
      help: 'Events per flushed batch.',
      buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000],
      registers,
    }),
    rowsWritten: new Counter({ name: 'floodgate_worker_rows_written_total', help: 'Event rows inserted into Postgres.', registers }),
    duplicatesDropped: new Counter({
      name: 'floodgate_worker_duplicates_dropped_total',
      help: 'Events not inserted because their idempotency key or id was already stored.',
      registers,
    }),
    entriesRead: new Counter({ name: 'floodgate_worker_entries_read_total', help: 'Stream entries read (new and reclaimed).', registers }),
    entriesReclaimed: new Counter({
      name: 'floodgate_worker_entries_reclaimed_total',
      help: 'Stream entries taken over from a dead or stuck consumer (XAUTOCLAIM).',
      registers,
    }),
    flushErrors: new Counter({
      name: 'floodgate_worker_flush_errors_total',
      help: 'Failed batch writes, by kind (transient: retried as a whole; permanent: split per entry).',
      labelNames: ['kind'],
      registers,
    }),
    deadLettered: new Counter({
      name: 'floodgate_worker_dead_lettered_total',
      help: 'Stream entries moved to the dead-letter stream, by reason.',
      labelNames: ['reason'],
      registers,
    }),
    bufferedEvents: new Gauge({ name: 'floodgate_worker_buffered_events', help: 'Events held in memory awaiting a flush.', registers }),
    timeToDurable: new Histogram({
      name: 'floodgate_time_to_durable_seconds',
      help: 'Per event: time from receipt at the API to commit in Postgres.',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
      registers,
    }),
    pgQueueClaimDuration: new Histogram({
      name: 'floodgate_pg_queue_claim_duration_seconds',
      help: 'QUEUE=postgres: time to claim one batch of queue rows (SELECT … FOR UPDATE SKIP LOCKED).',
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    noteRollupMinute(minuteMs) {
      // A late event's minute is older than one already seen: the gauge only moves forward.
      if (minuteMs <= newestMinuteMs) return;
      newestMinuteMs = minuteMs;
      rollupNewestMinute.set(minuteMs / 1000);
    },
    noteRollupTask(task, { ok, folded, watermark }) {
      rollupRuns.inc({ task, outcome: ok ? 'ok' : 'error' });
      if (!ok) return;
      rollupLastSuccess.set({ task }, Date.now() / 1000);
      if (folded) rollupFolded.inc(folded);
      if (watermark) rollupWatermark.set(watermark.getTime() / 1000);
    },
  };
  // Series exist from the start, so the first failure after a restart is visible to increase() and rate().
  for (const kind of ['transient', 'permanent']) metrics.flushErrors.inc({ kind }, 0);
  for (const reason of ['undecodable', 'redelivered', 'write_failed']) metrics.deadLettered.inc({ reason }, 0);
  metrics.flushDuration.zero({ outcome: 'ok' });
  for (const task of ['fold', 'rollup']) for (const outcome of ['ok', 'error']) rollupRuns.inc({ task, outcome }, 0);
  return metrics;
}
