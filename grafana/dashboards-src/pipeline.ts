/** The "Floodgate / Pipeline" dashboard (grafana/dashboards/pipeline.json). */
import { q, steps, type DashboardSpec } from '../builder.js';

export const dashboard: DashboardSpec = {
  file: 'pipeline.json',
  uid: 'floodgate-pipeline',
  title: 'Floodgate / Pipeline',
  description: 'From the Redis stream to Postgres: backlog, consumer group, flushes and time to durable.',
  shardVariable: true,
  rows: [
    {
      title: 'Durability',
      panels: [
        {
          title: 'Time to durable p99',
          kind: 'stat',
          width: 6,
          unit: 's',
          queries: [q('floodgate:time_to_durable_seconds:p99_1m', 'p99')],
          thresholds: steps(2, 1),
          description:
            'p99 of receipt at the API to commit in Postgres over the last minute. Red above 2 s: FloodgateTimeToDurableHigh fires after 5 minutes of that.',
        },
        {
          title: 'Time to durable p50 and p99',
          width: 18,
          unit: 's',
          min: 0,
          queries: [q('floodgate:time_to_durable_seconds:p50_1m', 'p50'), q('floodgate:time_to_durable_seconds:p99_1m', 'p99')],
          thresholds: steps(2),
          description:
            'Per event, from receipt at the API to commit in Postgres. p50 is normally about FLUSH_INTERVAL_MS plus the flush; a p99 that climbs steadily means ' +
            'the backlog is growing (see the stream row). No data while the worker commits nothing: check lag and flush errors then.',
        },
        {
          title: 'Rollup freshness',
          width: 24,
          unit: 's',
          min: 0,
          queries: [
            q('floodgate:rollup_newest_minute_age_seconds:max', 'age of the newest rolled-up minute'),
            q('time() - max by (job) (floodgate_rollup_maintenance_last_success_timestamp_seconds{task="fold"})', 'since the last fold'),
            q('time() - max by (job) (floodgate_rollup_watermark_timestamp_seconds)', 'roll-up watermark behind now'),
          ],
          thresholds: steps(180),
          description:
            'How old the newest minute in the rollups (read by GET /v1/stats and the Business events dashboard) is: the start of the newest ' +
            'minute a worker added events to, so a sawtooth between 0 and about 60 s with steady traffic. Minute deltas commit with their events, so a climb ' +
            'means nothing new is being stored (or no events arrive). Above the dashed line for 5 minutes while events are accepted, FloodgateRollupsStale fires. ' +
            'Also: the time since any worker last folded pending minute deltas (normally about ROLLUP_FOLD_INTERVAL_MS) and how far the roll-up watermark is ' +
            'behind now (normally ROLLUP_LAG_MS plus up to ROLLUP_INTERVAL_MS); either climbing means the maintenance fails: FloodgateRollupMaintenanceFailing.',
        },
        {
          title: 'Accepted vs stored events per second',
          width: 24,
          unit: 'ops',
          min: 0,
          queries: [
            q('floodgate:events_accepted:rate1m', 'accepted by the API'),
            q('floodgate:worker_rows_written:rate1m + floodgate:worker_duplicates_dropped:rate1m', 'stored or deduplicated by workers'),
          ],
          description:
            'In steady state the two lines overlap. Accepted above stored: the backlog grows (lag rising). Stored above accepted: workers are catching up after a spike.',
        },
      ],
    },
    {
      title: 'Stream and consumer group (Redis)',
      panels: [
        {
          title: 'Stream length',
          unit: 'short',
          min: 0,
          queries: [q('max(sum without (shard, stream) (floodgate_redis_stream_length))', 'entries in the stream')],
          description:
            'Entries in the ingest stream (one per accepted request), summed over the stream shards. Workers delete entries once written, so this is the backlog plus what is being flushed; it should hover near zero.',
        },
        {
          title: 'Consumer group lag and pending',
          unit: 'short',
          min: 0,
          queries: [
            q('max by (group) (sum without (shard) (floodgate_redis_group_lag))', 'lag {{group}} (not yet delivered)'),
            q('max by (group) (sum without (shard) (floodgate_redis_group_pending))', 'pending {{group}} (delivered, not acknowledged)'),
          ],
          thresholds: steps(10000),
          description:
            'Summed over the stream shards. lag: entries no worker has read yet; pending: read but not yet committed and acknowledged. Lag above the dashed line and rising for 10 minutes raises FloodgateConsumerLagGrowing.',
        },
        {
          title: 'Oldest pending entry age',
          unit: 's',
          min: 0,
          queries: [q('max by (group) (floodgate_redis_oldest_pending_age_seconds)', '{{group}}')],
          description:
            'The oldest across the stream shards. How long the oldest delivered-but-unacknowledged entry has waited. Above CLAIM_IDLE_MS its consumer is presumed dead and another worker reclaims it; a steadily climbing line means a stuck worker.',
        },
        {
          title: 'Dead-letter stream length',
          unit: 'short',
          min: 0,
          queries: [q('max(sum without (shard, stream) (floodgate_redis_dead_letter_length))', 'dead letters')],
          description:
            'Entries waiting in the dead-letter streams (one per stream shard), summed. Should be 0; any entry is an accepted request whose events are not stored. See the FloodgateDeadLetterEntriesAppearing runbook.',
        },
        {
          title: 'Redis memory',
          unit: 'bytes',
          min: 0,
          queries: [q('max(floodgate_redis_used_memory_bytes)', 'used memory')],
          description:
            'Memory used by Redis. The stream backlog lives here: it grows with lag. If it reaches maxmemory, XADD fails and the API answers 503 dependency_unavailable.',
        },
        {
          title: 'Redis clients and commands',
          unit: 'short',
          min: 0,
          queries: [q('max(floodgate_redis_connected_clients)', 'clients'), q('max(floodgate_redis_ops_per_second)', 'commands/s')],
          description:
            'Connected clients (API processes, workers, tools) and commands per second as Redis reports them (instantaneous_ops_per_sec).',
        },
      ],
    },
    {
      title: 'Stream shards',
      panels: [
        {
          title: 'Stream length by shard',
          unit: 'short',
          min: 0,
          queries: [q('max by (shard) (floodgate_redis_stream_length{shard=~"$shard"})', 'shard {{shard}}')],
          description:
            "Entries in each shard's stream (STREAM_SHARDS; tenants are routed to a shard by a hash of their name). One shard far above the others is one busy tenant or a shard whose master is slow; every shard rising together is the workers or Postgres.",
        },
        {
          title: 'Backlog by shard: lag and pending',
          unit: 'short',
          min: 0,
          queries: [
            q('max by (shard) (floodgate_redis_group_lag{shard=~"$shard"})', 'lag, shard {{shard}}'),
            q('max by (shard) (floodgate_redis_group_pending{shard=~"$shard"})', 'pending, shard {{shard}}'),
          ],
          description:
            "Per shard, entries no worker has read yet (lag) and entries read but not yet committed and acknowledged (pending). Each worker reads every shard, so lag on one shard only points at that shard's Redis master rather than at the workers.",
        },
        {
          title: 'Entries read per second by shard',
          unit: 'ops',
          min: 0,
          queries: [q('shard:floodgate_redis_group_entries_read:rate1m{shard=~"$shard"}', 'shard {{shard}}')],
          description:
            'Stream entries (accepted requests) the consumer group read from each shard per second: how the load spreads over the shards. A shard at zero while its length grows has no worker reading it.',
        },
        {
          title: 'Oldest pending entry age by shard',
          unit: 's',
          min: 0,
          queries: [q('max by (shard) (floodgate_redis_oldest_pending_age_seconds{shard=~"$shard"})', 'shard {{shard}}')],
          description:
            'Per shard, how long the oldest delivered-but-unacknowledged entry has waited. Above CLAIM_IDLE_MS another worker reclaims it from that shard; one shard climbing alone is a flush stuck on that shard.',
        },
      ],
    },
    {
      title: 'Worker',
      panels: [
        {
          title: 'Flush duration p50 and p99',
          unit: 's',
          min: 0,
          queries: [
            q('outcome:floodgate_worker_flush_duration_seconds:p50_1m', 'p50'),
            q('outcome:floodgate_worker_flush_duration_seconds:p99_1m', 'p99'),
          ],
          description:
            'Time to COPY, insert and commit one batch. Growing with the same batch size points at Postgres (locks, I/O, autovacuum); see the Postgres dashboard.',
        },
        {
          title: 'Batch size',
          unit: 'short',
          min: 0,
          queries: [
            q('floodgate:worker_batch_events:p50_1m', 'p50'),
            q('floodgate:worker_batch_events:p99_1m', 'p99'),
            q('floodgate:worker_batch_events:mean1m', 'mean'),
          ],
          description:
            'Events per flushed batch. Small batches at low traffic are normal (the FLUSH_INTERVAL_MS timer fires first); batches at FLUSH_BATCH_EVENTS mean the worker is saturated.',
        },
        {
          title: 'Rows written and duplicates dropped',
          unit: 'ops',
          min: 0,
          queries: [
            q('floodgate:worker_rows_written:rate1m', 'rows written'),
            q('floodgate:worker_duplicates_dropped:rate1m', 'duplicates dropped'),
          ],
          description:
            'Rows inserted per second, and events skipped because their idempotency key or id was already stored. Duplicates spike after a worker crash ' +
            '(reclaimed entries are rewritten) or when clients retry with keys: both expected.',
        },
        {
          title: 'Stream entries read and reclaimed',
          unit: 'ops',
          min: 0,
          queries: [
            q('floodgate:worker_entries_read:rate1m', 'read'),
            q('floodgate:worker_entries_reclaimed:rate1m', 'reclaimed (XAUTOCLAIM)'),
          ],
          description:
            'Entries (one per accepted request) read from the consumer group. Reclaimed entries were held by a consumer that died or stalled for CLAIM_IDLE_MS.',
        },
        {
          title: 'Flush errors by kind',
          unit: 'ops',
          min: 0,
          queries: [q('kind:floodgate_worker_flush_errors:rate5m', '{{kind}}')],
          description:
            'Failed batch writes per second (5m). transient: connection or serialisation trouble, the whole batch is retried with backoff and nothing new is read. ' +
            'permanent: the batch is split and entries that fail alone are dead-lettered.',
        },
        {
          title: 'Events buffered in workers',
          unit: 'short',
          min: 0,
          queries: [q('sum(floodgate_worker_buffered_events)', 'buffered')],
          description:
            'Events read from the stream and held in worker memory awaiting a flush. Stuck at a high value with flush errors: the worker is retrying one batch.',
        },
        {
          title: 'Dead-lettered entries by reason',
          width: 24,
          unit: 'ops',
          min: 0,
          queries: [q('reason:floodgate_worker_dead_lettered:rate5m', '{{reason}}')],
          description:
            'Entries moved to the dead-letter stream per second (5m). Any non-zero value means acknowledged events that will not be stored without action: ' +
            'see the FloodgateDeadLetterEntriesAppearing runbook.',
        },
      ],
    },
  ],
};
