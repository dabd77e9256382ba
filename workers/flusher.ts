import { Registry } from 'prom-client';
import { BREAKER_CODE, createDependencyBreaker, isBreakerRejection, type Breaker } from '../lib/breaker.js';
import type { Config } from '../lib/config.js';
import type { Pool } from '../lib/db.js';
import { REDIS_REPLY } from '../lib/errors.js';
import { isTransientDbError, writeEntries, type WriteResult } from '../lib/pg-batch-write.js';
import type { Logger } from '../lib/logger.js';
import type { Redis } from '../lib/redis.js';
import type { StreamShard } from '../lib/shards.js';
import { ENTRY_FIELD, decodeEntry, type QueuedEntry, type StreamEntry } from '../lib/stream-entry.js';
import type { WorkerMetrics } from './worker-metrics.js';

export interface FlusherDeps {
  readonly config: Config;
  readonly pool: Pool;
  /** For acks and dead letters; the flusher duplicates it for its blocking reads. */
  readonly redis: Redis;
  readonly logger: Logger;
  /** Unique per process: pending entries are owned by consumer name. */
  readonly consumerName: string;
  readonly metrics?: WorkerMetrics;
  /** Guards the batch write (see createPostgresWriteBreaker); one with a private registry when omitted. */
  readonly breaker?: Breaker;
  /**
   * Called after each batch commits (the live view's publisher); must not block. The batch is acknowledged once
   * the promise it returns settles, without holding up the next write: a worker that dies before then leaves the
   * entries pending, and whoever takes them over writes them again (a no-op) and calls this hook for them again.
   */
  readonly onCommitted?: (entries: readonly QueuedEntry[], result: WriteResult, committedAtMs: number) => Promise<void> | void;
  /**
   * The stream shards to read (each its stream and dead-letter keys); the one STREAM_KEY and DEAD_LETTER_STREAM_KEY
   * when omitted. Entries of every shard share one buffer and are written in one batch.
   */
  readonly shards?: readonly StreamShard[];
}

/** Counters a caller (or a test) can read. */
export interface FlusherStats {
  entriesRead: number;
  entriesReclaimed: number;
  eventsWritten: number;
  duplicatesDropped: number;
  flushes: number;
  flushErrors: number;
  deadLettered: number;
}

export interface Flusher {
  start(): Promise<void>;
  /** Stops reading, writes and acknowledges what it holds (within shutdownTimeoutMs), closes its connection. */
  close(): Promise<void>;
  readonly stats: Readonly<FlusherStats>;
  /** Events held in memory, not yet written. */
  buffered(): number;
}

/** One shard as the flusher reads it: its keys and its own connection for blocking reads. */
interface ShardReader {
  readonly shard: StreamShard;
  readonly reader: Redis;
  readonly log: Logger;
  /** Its last read got fewer entries than it asked for: nothing more was waiting on this shard then. */
  caughtUp: boolean;
}

interface Held {
  readonly from: ShardReader;
  readonly id: string;
  readonly payload: string;
  readonly entry: StreamEntry;
  /** Deliveries before this one (from the consumer group's pending list when reclaimed). */
  priorDeliveries: number;
  attempts: number;
}

type RawEntry = [id: string, fields: string[]];
/** An entry to move to the dead-letter stream, and why. */
type Doomed = { readonly id: string; readonly payload: string; readonly reason: string };

const IDLE_BLOCK_MS = 500;
const MAX_ENTRIES_PER_READ = 500;
const MAX_BACKOFF_MS = 5000;
// The longest a caught-up shard waits before its next read while a batch is held (see readNew).
const PACED_READ_MS = 100;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The breaker around the worker's batch write (`postgres_write`): a stalled or unreachable Postgres opens it,
 * so the worker stops trying (and acknowledging) until a half-open trial write succeeds. Rows Postgres refuses
 * on their own merits are the batch's fault, not the database's, and do not count.
 */
export function createPostgresWriteBreaker(config: Config, registry: Registry, logger: Logger): Breaker {
  return createDependencyBreaker(config, {
    name: 'postgres_write',
    registry,
    logger,
    timeoutMs: config.dbWriteTimeoutMs,
    isCallerError: (err) => !isTransientDbError(err),
  });
}

/** A write worth retrying later with the same rows: the database (or its breaker) failed, not the rows. */
export function retryLater(err: unknown): boolean {
  return isTransientDbError(err) || isBreakerRejection(err);
}

/** The breaker refused the write without trying it (open, or half-open with its trial running). */
function refused(err: unknown): boolean {
  return (err as { code?: string })?.code === BREAKER_CODE.open;
}

/**
 * The flush worker's core: reads the stream (or every stream shard) with a consumer group, buffers by count and
 * age, writes batches with COPY, then XACKs and XDELs them (so the stream stays bounded and never loses an
 * unwritten entry).
 * Transient database errors keep the batch and retry with backoff, reading nothing new meanwhile; an entry
 * that fails on its own is retried, then moved to the dead-letter stream while the rest of its batch lands.
 * Every write goes through the postgres_write breaker: while it is open the retries cost nothing (no
 * connection is tried), entries stay pending in Redis, and its half-open trial is the next retry.
 *
 * With several shards, each has its own blocking reader (one XREADGROUP cannot span slots on a cluster), its own
 * reclaim and dead-letter stream, but their entries share one buffer: a batch holds entries of every shard and is
 * one Postgres write, then each shard's entries are acknowledged on that shard. So sharding does not shrink the
 * batches (each write, a commit, costs Postgres and the worker about as much whatever its size).
 */
export function createFlusher(deps: FlusherDeps): Flusher {
  const { config, pool, redis, logger, consumerName, metrics } = deps;
  const breaker = deps.breaker ?? createPostgresWriteBreaker(config, new Registry(), logger);
  const log = logger.child({ consumer: consumerName });
  const group = config.consumerGroup;
  const shards: ShardReader[] = (
    deps.shards ?? [{ index: 0, streamKey: config.streamKey, deadLetterStreamKey: config.deadLetterStreamKey }]
  ).map((shard) => {
    const reader = redis.duplicate();
    reader.on('error', () => {});
    return { shard, reader, log: log.child({ stream: shard.streamKey }), caughtUp: false };
  });
  // Reads in flight, one at most per shard; a failed read's error waits here for the loop to rethrow it.
  const reading = new Map<ShardReader, Promise<void>>();
  let readError: Error | undefined;
  const stats: FlusherStats = {
    entriesRead: 0,
    entriesReclaimed: 0,
    eventsWritten: 0,
    duplicatesDropped: 0,
    flushes: 0,
    flushErrors: 0,
    deadLettered: 0,
  };

  let buffer: Held[] = [];
  let bufferedEvents = 0;
  let oldestAt = 0;
  let stopping = false;
  let loop: Promise<void> | undefined;
  let closing: Promise<void> | undefined;
  let nextReclaimAt = 0;
  let backoffMs = 0;
  // One write may run while the next batch is being read: Postgres and this process then work in parallel.
  let writing: Promise<void> = Promise.resolve();
  // Acknowledgements waiting for the commit hook (the live view publishing the batch).
  const acks = new Set<Promise<void>>();

  const reclaimEveryMs = Math.max(100, Math.min(config.claimIdleMs / 2, 10_000));

  async function ensureGroup(key: string): Promise<void> {
    try {
      await redis.xgroup('CREATE', key, group, '0', 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).startsWith(REDIS_REPLY.busyGroup)) throw err;
    }
  }

  function setBuffered(): void {
    metrics?.bufferedEvents.set(bufferedEvents);
  }

  function hold(from: ShardReader, raw: RawEntry[], priorDeliveries: (id: string) => number, reclaimed: boolean): Promise<void> {
    const bad: Doomed[] = [];
    for (const [id, fields] of raw) {
      const at = fields.indexOf(ENTRY_FIELD);
      const payload = at >= 0 && at % 2 === 0 ? (fields[at + 1] ?? '') : '';
      let entry: StreamEntry;
      try {
        entry = decodeEntry(payload);
      } catch (err) {
        bad.push({ id, payload, reason: `undecodable entry: ${(err as Error).message}` });
        continue;
      }
      if (buffer.length === 0) oldestAt = Date.now();
      buffer.push({ from, id, payload, entry, priorDeliveries: priorDeliveries(id), attempts: 0 });
      bufferedEvents += entry.count;
    }
    stats.entriesRead += raw.length;
    metrics?.entriesRead.inc(raw.length);
    if (reclaimed) {
      stats.entriesReclaimed += raw.length;
      metrics?.entriesReclaimed.inc(raw.length);
    }
    setBuffered();
    return bad.length > 0 ? deadLetter(from, bad) : Promise.resolve();
  }

  /** The entries of `held` by the shard they came from. */
  function byShard<T extends { from: ShardReader }>(held: readonly T[]): Map<ShardReader, T[]> {
    const groups = new Map<ShardReader, T[]>();
    for (const h of held) {
      const list = groups.get(h.from);
      if (list) list.push(h);
      else groups.set(h.from, [h]);
    }
    return groups;
  }

  /** Moves entries of one shard to its dead-letter stream: one MULTI in the shard's slot. */
  async function deadLetter(from: ShardReader, items: Doomed[]): Promise<void> {
    const { streamKey: key, deadLetterStreamKey: deadLetterKey } = from.shard;
    const tx = redis.multi();
    for (const { id, payload, reason } of items) {
      tx.xadd(
        deadLetterKey,
        '*',
        'entry_id',
        id,
        'reason',
        reason.slice(0, 1000),
        'failed_at',
        new Date().toISOString(),
        'payload',
        payload,
      );
    }
    const ids = items.map((i) => i.id);
    tx.xack(key, group, ...ids);
    tx.xdel(key, ...ids);
    await tx.exec();
    stats.deadLettered += items.length;
    for (const { id, reason } of items) {
      metrics?.deadLettered.inc({
        reason: reason.startsWith('undecodable') ? 'undecodable' : reason.startsWith('delivered') ? 'redelivered' : 'write_failed',
      });
      from.log.error({ entryId: id, reason }, 'entry moved to the dead-letter stream');
    }
  }

  /** XACK + XDEL of written entries, one MULTI per shard (each in its shard's slot), the shards at once. */
  async function acknowledge(batch: readonly Held[]): Promise<void> {
    await Promise.all(
      [...byShard(batch)].map(async ([from, held]) => {
        const ids = held.map((h) => h.id);
        try {
          await redis
            .multi()
            .xack(from.shard.streamKey, group, ...ids)
            .xdel(from.shard.streamKey, ...ids)
            .exec();
        } catch (err) {
          // Rows are committed; the entries stay pending and a later delivery is a no-op thanks to the keys.
          from.log.error({ err, entries: ids.length }, 'could not acknowledge written entries');
        }
      }),
    );
  }

  function observeDurable(batch: Held[], committedAt: number): void {
    if (!metrics) return;
    for (const held of batch) {
      const seconds = Math.max(0, committedAt - held.entry.receivedAt) / 1000;
      for (let i = 0; i < held.entry.count; i++) metrics.timeToDurable.observe(seconds);
    }
  }

  async function write(batch: Held[]): Promise<void> {
    const started = performance.now();
    const events = batch.reduce((n, h) => n + h.entry.count, 0);
    const entries = batch.map((h) => h.entry);
    const result = await breaker.fire((signal) => writeEntries(pool, entries, { signal, statementTimeoutMs: config.dbWriteTimeoutMs }));
    const committedAt = Date.now();
    metrics?.flushDuration.observe({ outcome: 'ok' }, (performance.now() - started) / 1000);
    metrics?.batchEvents.observe(events);
    metrics?.rowsWritten.inc(result.inserted);
    metrics?.duplicatesDropped.inc(result.duplicates);
    if (result.newestMinute != null) metrics?.noteRollupMinute(result.newestMinute);
    stats.flushes++;
    stats.eventsWritten += result.inserted;
    stats.duplicatesDropped += result.duplicates;
    observeDurable(batch, committedAt);
    const hooked = deps.onCommitted?.(
      batch.map((h) => ({ queueId: `${h.from.shard.index}:${h.id}`, entry: h.entry })),
      result,
      committedAt,
    );
    if (!hooked) return acknowledge(batch);
    const ack: Promise<void> = hooked.then(
      () => acknowledge(batch),
      () => acknowledge(batch),
    );
    acks.add(ack);
    void ack.finally(() => acks.delete(ack));
  }

  /** Writes everything held; on a transient failure keeps it all and arms the backoff. */
  async function flush(): Promise<void> {
    if (buffer.length === 0) return;
    const batch = buffer;
    buffer = [];
    bufferedEvents = 0;
    try {
      await write(batch);
      backoffMs = 0;
    } catch (err) {
      if (retryLater(err)) {
        keep(batch);
        backoffMs = Math.min(MAX_BACKOFF_MS, Math.max(100, backoffMs * 2));
        // While the breaker is open nothing was tried: it logged the opening once, each refusal is not news.
        if (refused(err)) return;
        stats.flushErrors++;
        metrics?.flushErrors.inc({ kind: 'transient' });
        log.error({ err, entries: batch.length, retryInMs: backoffMs }, 'batch write failed; retrying');
        return;
      }
      stats.flushErrors++;
      metrics?.flushErrors.inc({ kind: 'permanent' });
      log.error({ err, entries: batch.length }, 'batch write failed; writing its entries one by one');
      await writeOneByOne(batch);
    } finally {
      setBuffered();
    }
  }

  function keep(entries: Held[]): void {
    if (entries.length === 0) return;
    buffer = entries.concat(buffer);
    bufferedEvents = buffer.reduce((n, h) => n + h.entry.count, 0);
    oldestAt = Math.min(oldestAt || Date.now(), Date.now());
  }

  /** Dead-letters `doomed`, one MULTI per shard. */
  async function deadLetterAll(doomed: (Doomed & { from: ShardReader })[]): Promise<void> {
    for (const [from, items] of byShard(doomed)) await deadLetter(from, items);
  }

  async function writeOneByOne(batch: Held[]): Promise<void> {
    const retry: Held[] = [];
    const doomed: (Doomed & { from: ShardReader })[] = [];
    for (let i = 0; i < batch.length; i++) {
      const held = batch[i]!;
      try {
        await write([held]);
      } catch (err) {
        if (retryLater(err)) {
          keep([...retry, ...batch.slice(i)]);
          backoffMs = Math.min(MAX_BACKOFF_MS, Math.max(100, backoffMs * 2));
          if (doomed.length > 0) await deadLetterAll(doomed);
          return;
        }
        held.attempts++;
        if (held.attempts + held.priorDeliveries >= config.maxDeliveryAttempts) {
          doomed.push({
            from: held.from,
            id: held.id,
            payload: held.payload,
            reason: `write failed ${held.attempts + held.priorDeliveries} times: ${(err as Error).message}`,
          });
        } else {
          retry.push(held);
        }
      }
    }
    if (doomed.length > 0) await deadLetterAll(doomed);
    keep(retry);
  }

  /** Takes over entries another consumer left pending longer than claimIdleMs (e.g. it crashed mid-flush). */
  async function reclaim(from: ShardReader): Promise<void> {
    const key = from.shard.streamKey;
    const pending = (await redis.xpending(key, group, 'IDLE', config.claimIdleMs, '-', '+', MAX_ENTRIES_PER_READ)) as [
      string,
      string,
      number,
      number,
    ][];
    const candidates = pending.filter(([, owner]) => owner !== consumerName);
    if (candidates.length === 0) return;
    const deliveries = new Map(candidates.map(([id, , , count]) => [id, count]));
    const tooMany = candidates.filter(([, , , count]) => count >= config.maxDeliveryAttempts).map(([id]) => id);
    const [, claimed, deleted] = (await redis.xautoclaim(
      key,
      group,
      consumerName,
      config.claimIdleMs,
      candidates[0]![0],
      'COUNT',
      candidates.length,
    )) as [string, RawEntry[], string[]?];
    if (deleted && deleted.length > 0) await redis.xack(key, group, ...deleted);
    const live = claimed.filter((e): e is RawEntry => Array.isArray(e) && Array.isArray(e[1]));
    const poisoned = live.filter(([id]) => tooMany.includes(id));
    if (poisoned.length > 0) {
      await deadLetter(
        from,
        poisoned.map(([id, fields]) => ({
          id,
          payload: fields[fields.indexOf(ENTRY_FIELD) + 1] ?? '',
          reason: `delivered ${deliveries.get(id)} times without being written (a worker died while holding it)`,
        })),
      );
    }
    const rest = live.filter(([id]) => !tooMany.includes(id));
    if (rest.length > 0) {
      from.log.warn({ entries: rest.length }, 'reclaimed entries left pending by another consumer');
      await hold(from, rest, (id) => deliveries.get(id) ?? 0, true);
    }
  }

  async function readNew(from: ShardReader): Promise<void> {
    // Caught up with this shard and holding a batch that is not due yet: read again when it is due (or after
    // PACED_READ_MS, whichever is sooner) rather than as each entry arrives. That one read takes whatever arrived
    // meanwhile, and the batch is written when it would have been anyway; reading every few entries as they come
    // costs a round trip (and Redis a call) each.
    if (from.caughtUp && buffer.length > 0) {
      const wait = Math.min(PACED_READ_MS, oldestAt + config.flushIntervalMs - Date.now());
      if (wait > 0) await sleep(wait);
    }
    // The room left is shared by the shards read at once, so that together they fill about one batch.
    const room = Math.ceil((config.flushBatchEvents - bufferedEvents) / shards.length);
    const need = Math.max(1, Math.min(MAX_ENTRIES_PER_READ, room));
    const block = buffer.length === 0 ? IDLE_BLOCK_MS : Math.max(1, config.flushIntervalMs - (Date.now() - oldestAt));
    let reply: [string, RawEntry[]][] | null;
    try {
      reply = (await from.reader.xreadgroup(
        'GROUP',
        group,
        consumerName,
        'COUNT',
        need,
        'BLOCK',
        block,
        'STREAMS',
        from.shard.streamKey,
        '>',
      )) as [string, RawEntry[]][] | null;
    } catch (err) {
      if (String((err as Error).message).startsWith(REDIS_REPLY.noGroup)) {
        from.log.warn('consumer group missing (stream deleted?); recreating it');
        await ensureGroup(from.shard.streamKey);
        return;
      }
      throw err;
    }
    const got = reply?.[0]?.[1] ?? [];
    from.caughtUp = got.length < need;
    if (got.length > 0) await hold(from, got, () => 0, false);
  }

  /** Starts a read on every shard that has none in flight, while the buffer has room. */
  function readShards(): void {
    if (bufferedEvents >= config.flushBatchEvents) return;
    for (const from of shards) {
      if (reading.has(from)) continue;
      const read = readNew(from)
        .catch((err: unknown) => {
          readError ??= err instanceof Error ? err : new Error(String(err));
        })
        .finally(() => reading.delete(from));
      reading.set(from, read);
    }
  }

  /** Waits for the first read in flight to finish (one at most per shard, each blocking at most IDLE_BLOCK_MS). */
  async function someRead(): Promise<void> {
    if (reading.size > 0) await Promise.race(reading.values());
    if (readError !== undefined) {
      const err = readError;
      readError = undefined;
      throw err;
    }
  }

  async function run(): Promise<void> {
    while (!stopping) {
      try {
        if (backoffMs > 0) {
          await writing;
          await sleep(backoffMs);
          await flush();
          continue;
        }
        if (Date.now() >= nextReclaimAt) {
          nextReclaimAt = Date.now() + reclaimEveryMs;
          for (const from of shards) await reclaim(from);
        }
        readShards();
        // A full buffer starts no read: the write in flight is what it waits for.
        if (reading.size === 0) await writing;
        await someRead();
        if (bufferedEvents >= config.flushBatchEvents || (buffer.length > 0 && Date.now() - oldestAt >= config.flushIntervalMs)) {
          await writing;
          writing = flush().catch((err: unknown) => log.error({ err }, 'flush failed'));
        }
      } catch (err) {
        log.error({ err }, 'flush loop error; retrying');
        await sleep(Math.min(MAX_BACKOFF_MS, Math.max(200, backoffMs)));
      }
    }
    // What the reads still in flight deliver is held, and written by the drain.
    await Promise.all(reading.values());
  }

  async function drain(): Promise<void> {
    await writing;
    const deadline = Date.now() + config.shutdownTimeoutMs;
    while (buffer.length > 0 && Date.now() < deadline) {
      await flush();
      if (buffer.length > 0) await sleep(Math.min(backoffMs || 100, Math.max(0, deadline - Date.now())));
    }
    if (buffer.length > 0) {
      // Not lost: the entries stay pending in the group and another worker reclaims them.
      log.error({ entries: buffer.length, events: bufferedEvents }, 'shutting down with unwritten entries; they stay pending in Redis');
    }
    if (acks.size > 0) {
      // Written, not yet published: past the deadline they stay pending, and whoever takes them over publishes them.
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, deadline - Date.now()))));
      await Promise.race([Promise.all(acks), late]);
      clearTimeout(timer);
    }
  }

  return {
    stats,
    buffered: () => bufferedEvents,
    async start() {
      for (const from of shards) await ensureGroup(from.shard.streamKey);
      loop = run();
      log.info({ group }, 'flush worker started');
    },
    close() {
      closing ??= (async () => {
        stopping = true;
        await loop?.catch(() => {});
        await drain();
        await Promise.all(shards.map(({ reader }) => reader.quit().catch(() => reader.disconnect())));
        if (!deps.breaker) breaker.shutdown();
      })();
      return closing;
    },
  };
}
