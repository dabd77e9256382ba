import { num } from '../stats-scrape.js';
import type { PgSectionContext } from './section.js';

/** pg_stat_bgwriter: checkpoints and who writes shared buffers. */
export function bgwriterSection({ scrape, timed }: PgSectionContext): void {
  // pg_stat_bgwriter (PostgreSQL 15/16 columns; 17 moved the checkpoint ones to pg_stat_checkpointer).
  const checkpoints = scrape.counter({
    name: 'floodgate_pg_checkpoints_total',
    help: 'Checkpoints performed, by kind: timed (checkpoint_timeout) or requested (WAL volume, CHECKPOINT).',
    labelNames: ['kind'],
  });
  const checkpointTime = scrape.counter({
    name: 'floodgate_pg_checkpoint_time_seconds_total',
    help: 'Time checkpoints spent writing files to disk (phase="write") and syncing them (phase="sync").',
    labelNames: ['phase'],
  });
  const buffersWritten = scrape.counter({
    name: 'floodgate_pg_buffers_written_total',
    help: 'Shared buffers written, by writer: checkpointer, bgwriter (background writer) or backend (a query had to write itself).',
    labelNames: ['writer'],
  });
  const maxwrittenClean = scrape.counter({
    name: 'floodgate_pg_bgwriter_maxwritten_clean_total',
    help: 'Times the background writer stopped a cleaning scan for having written too many buffers.',
  });
  const buffersAllocated = scrape.counter({ name: 'floodgate_pg_buffers_allocated_total', help: 'Shared buffers allocated.' });
  scrape.section('bgwriter', [checkpoints, checkpointTime, buffersWritten, maxwrittenClean, buffersAllocated], () =>
    timed(async (client) => {
      const { rows } = await client.query(
        `SELECT checkpoints_timed, checkpoints_req, checkpoint_write_time, checkpoint_sync_time, buffers_checkpoint,
                buffers_clean, maxwritten_clean, buffers_backend, buffers_alloc
           FROM pg_stat_bgwriter`,
      );
      const r = (rows[0] ?? {}) as Record<string, unknown>;
      return () => {
        checkpoints.inc({ kind: 'timed' }, num(r.checkpoints_timed));
        checkpoints.inc({ kind: 'requested' }, num(r.checkpoints_req));
        // Postgres reports these two in milliseconds.
        checkpointTime.inc({ phase: 'write' }, num(r.checkpoint_write_time) / 1000);
        checkpointTime.inc({ phase: 'sync' }, num(r.checkpoint_sync_time) / 1000);
        buffersWritten.inc({ writer: 'checkpointer' }, num(r.buffers_checkpoint));
        buffersWritten.inc({ writer: 'bgwriter' }, num(r.buffers_clean));
        buffersWritten.inc({ writer: 'backend' }, num(r.buffers_backend));
        maxwrittenClean.inc(num(r.maxwritten_clean));
        buffersAllocated.inc(num(r.buffers_alloc));
      };
    }),
  );
}
