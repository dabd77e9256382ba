import type { Registry } from 'prom-client';
import { REDIS_REPLY } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import type { Redis } from '../../lib/redis.js';
import type { StreamShard } from '../../lib/shards.js';
import { createStatsScrape, num } from './stats-scrape.js';

/** Options of registerRedisStats. */
export interface RedisStatsOptions {
  readonly registry: Registry;
  /**
   * A client free for ordinary commands: not one parked in a blocking XREADGROUP (the flusher's reader), or every
   * scrape would queue behind the block and time out.
   */
  readonly redis: Redis;
  readonly streamKey: string;
  readonly deadLetterStreamKey: string;
  readonly consumerGroup: string;
  /**
   * The stream shards (STREAM_SHARDS) when there are several: every stream and group figure is reported per shard
   * (its `shard` label, the shard's index). Without it, the one stream `streamKey` and its `deadLetterStreamKey`,
   * as shard "0".
   */
  readonly shards?: readonly StreamShard[];
  /** Whole-scrape budget: the scrape returns by then whatever Redis does. */
  readonly timeoutMs?: number;
  /** Told when a section starts failing and when it recovers (not on every failed scrape). */
  readonly logger?: Logger;
}

/** `INFO` text as a map of its `key:value` lines. */
export function parseInfo(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const at = line.indexOf(':');
    if (at > 0 && !line.startsWith('#')) fields.set(line.slice(0, at), line.slice(at + 1).trim());
  }
  return fields;
}

/** A flat `[name, value, name, value…]` reply (XINFO) as a map. */
function pairs(reply: unknown): Map<string, unknown> {
  const map = new Map<string, unknown>();
  if (!Array.isArray(reply)) return map;
  for (let i = 0; i + 1 < reply.length; i += 2) map.set(String(reply[i]), reply[i + 1]);
  return map;
}

/** Whether a Redis error says the stream or group is not there, which the figures report as zeros. */
function isMissing(err: unknown): boolean {
  const message = String((err as Error | undefined)?.message ?? '');
  return message.startsWith(REDIS_REPLY.noGroup) || message.startsWith(REDIS_REPLY.noSuchKey);
}

/** The millisecond timestamp a stream entry id starts with (`<ms>-<seq>`). */
function idMillis(id: unknown): number | undefined {
  const ms = Number.parseInt(String(id).split('-')[0] ?? '', 10);
  return Number.isFinite(ms) ? ms : undefined;
}

/**
 * Registers the Redis collectors in `registry`: server figures from INFO, and the ingest stream's length,
 * dead letters and consumer-group backlog. Queried at scrape time under a timeout, so a down or hung Redis
 * shows as `floodgate_redis_up 0` instead of a hung or failed scrape.
 */
export function registerRedisStats(options: RedisStatsOptions): void {
  const { registry, redis, streamKey, deadLetterStreamKey, consumerGroup, timeoutMs = 2000, logger } = options;
  const shards = options.shards ?? [{ index: 0, streamKey, deadLetterStreamKey }];
  const scrape = createStatsScrape({
    registry,
    timeoutMs,
    logger,
    self: {
      up: { name: 'floodgate_redis_up', help: 'Whether the last scrape got any answer from Redis within the timeout (1) or not (0).' },
      duration: { name: 'floodgate_redis_scrape_duration_seconds', help: 'Time the last Redis stats scrape took.' },
      errors: {
        name: 'floodgate_redis_scrape_errors_total',
        help: 'Redis stats sections that failed or timed out, by collector section.',
        labelNames: ['collector'],
      },
    },
  });

  const usedMemory = scrape.gauge({ name: 'floodgate_redis_used_memory_bytes', help: 'Memory Redis has allocated (INFO used_memory).' });
  const maxMemory = scrape.gauge({ name: 'floodgate_redis_maxmemory_bytes', help: 'Redis maxmemory setting; 0 means no limit.' });
  const clients = scrape.gauge({ name: 'floodgate_redis_connected_clients', help: 'Client connections to Redis, all clients.' });
  const opsPerSecond = scrape.gauge({
    name: 'floodgate_redis_ops_per_second',
    help: "Commands per second, Redis's own recent estimate (instantaneous_ops_per_sec).",
  });
  const commands = scrape.counter({
    name: 'floodgate_redis_commands_processed_total',
    help: 'Commands Redis has processed since it started.',
  });
  const evicted = scrape.counter({
    name: 'floodgate_redis_evicted_keys_total',
    help: 'Keys Redis evicted for maxmemory since it started; an evicted stream is lost events.',
  });
  scrape.section('info', [usedMemory, maxMemory, clients, opsPerSecond, commands, evicted], async () => {
    // Plain INFO (default sections): asking for several sections at once needs Redis 7, and this is a few KB.
    const info = parseInfo(await redis.info());
    const field = (name: string) => {
      const value = info.get(name);
      if (value === undefined) throw new Error(`INFO has no ${name}`);
      return num(value);
    };
    const figures = {
      used: field('used_memory'),
      max: field('maxmemory'),
      clients: field('connected_clients'),
      ops: field('instantaneous_ops_per_sec'),
      commands: field('total_commands_processed'),
      evicted: field('evicted_keys'),
    };
    return () => {
      usedMemory.set(figures.used);
      maxMemory.set(figures.max);
      clients.set(figures.clients);
      opsPerSecond.set(figures.ops);
      commands.inc(figures.commands);
      evicted.inc(figures.evicted);
    };
  });

  // XLEN answers 0 for a stream that does not exist.
  const streamLength = scrape.gauge({
    name: 'floodgate_redis_stream_length',
    help: 'Entries in the ingest stream: accepted, not yet written and acknowledged (the flusher deletes what it acknowledges).',
    labelNames: ['stream', 'shard'],
  });
  const deadLetterLength = scrape.gauge({
    name: 'floodgate_redis_dead_letter_length',
    help: 'Entries in the dead-letter stream: requests that could not be written after every attempt.',
    labelNames: ['stream', 'shard'],
  });
  scrape.section('streams', [streamLength, deadLetterLength], async () => {
    const lengths = await Promise.all(shards.map((s) => Promise.all([redis.xlen(s.streamKey), redis.xlen(s.deadLetterStreamKey)])));
    return () => {
      shards.forEach((s, i) => {
        streamLength.set({ stream: s.streamKey, shard: String(s.index) }, lengths[i]![0]);
        deadLetterLength.set({ stream: s.deadLetterStreamKey, shard: String(s.index) }, lengths[i]![1]);
      });
    };
  });

  // XINFO GROUPS: what Redis knows of the consumer group. A missing stream or group reads as zeros.
  const groupExists = scrape.gauge({
    name: 'floodgate_redis_group_exists',
    help: '1 if the consumer group exists on the ingest stream; 0 means the other group figures are zeros by default.',
    labelNames: ['group', 'shard'],
  });
  const pending = scrape.gauge({
    name: 'floodgate_redis_group_pending',
    help: 'Entries delivered to a consumer of the group and not yet acknowledged (XINFO GROUPS pending).',
    labelNames: ['group', 'shard'],
  });
  const lag = scrape.gauge({
    name: 'floodgate_redis_group_lag',
    help:
      'Entries not yet delivered to the group (XINFO GROUPS lag). When Redis cannot tell (deletions in the range), ' +
      'stream length minus pending, which is exact while acknowledged entries are deleted.',
    labelNames: ['group', 'shard'],
  });
  const entriesRead = scrape.counter({
    name: 'floodgate_redis_group_entries_read_total',
    help: 'Entries the group has read (XINFO GROUPS entries-read); absent while Redis cannot tell.',
    labelNames: ['group', 'shard'],
  });
  const consumers = scrape.gauge({
    name: 'floodgate_redis_group_consumers',
    help: 'Consumers registered in the group.',
    labelNames: ['group', 'shard'],
  });
  scrape.section('group', [groupExists, pending, lag, entriesRead, consumers], async () => {
    const perShard = await Promise.all(
      shards.map(async (shard) => {
        let groups: unknown[] = [];
        let length = 0;
        try {
          [groups, length] = await Promise.all([redis.xinfo('GROUPS', shard.streamKey) as Promise<unknown[]>, redis.xlen(shard.streamKey)]);
        } catch (err) {
          if (!isMissing(err)) throw err;
        }
        return { group: groups.map(pairs).find((g) => String(g.get('name')) === consumerGroup), length };
      }),
    );
    return () => {
      // One series per shard: a shard whose stream or group is missing reads as zeros with group_exists 0.
      perShard.forEach(({ group, length }, i) => {
        const labels = { group: consumerGroup, shard: String(shards[i]!.index) };
        groupExists.set(labels, group ? 1 : 0);
        const waiting = group ? num(group.get('pending')) : 0;
        pending.set(labels, waiting);
        consumers.set(labels, group ? num(group.get('consumers')) : 0);
        const reportedLag = group?.get('lag');
        // Redis 7 answers nil when deletions make its counter unusable; Floodgate deletes every entry it acknowledges.
        lag.set(labels, !group ? 0 : reportedLag === null || reportedLag === undefined ? Math.max(0, length - waiting) : num(reportedLag));
        const read = group?.get('entries-read');
        if (!group) entriesRead.inc(labels, 0);
        else if (read !== null && read !== undefined) entriesRead.inc(labels, num(read));
      });
    };
  });

  // XPENDING summary: the oldest entry still unacknowledged, aged by Redis's own clock (ids carry its time).
  const oldestPendingAge = scrape.gauge({
    name: 'floodgate_redis_oldest_pending_age_seconds',
    help: 'Age of the oldest delivered-but-unacknowledged entry of the group, from its stream id (0 if none).',
    labelNames: ['group', 'shard'],
  });
  scrape.section('pending', [oldestPendingAge], async () => {
    const [time, ...summaries] = await Promise.all([
      redis.time(),
      ...shards.map((shard) =>
        redis.xpending(shard.streamKey, consumerGroup).catch((err: unknown) => {
          if (isMissing(err)) return [0, null, null, null];
          throw err;
        }),
      ),
    ]);
    // Aged by one node's clock (each id carries its own master's clock; masters' clocks are assumed close).
    const nowMs = num(time[0]) * 1000 + Math.floor(num(time[1]) / 1000);
    const oldest = summaries.map((summary) => (num(summary[0]) > 0 ? idMillis(summary[1]) : undefined));
    return () => {
      oldest.forEach((ms, i) => {
        const labels = { group: consumerGroup, shard: String(shards[i]!.index) };
        oldestPendingAge.set(labels, ms === undefined ? 0 : Math.max(0, (nowMs - ms) / 1000));
      });
    };
  });
}
