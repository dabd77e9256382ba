import { createHash } from 'node:crypto';
import { Counter, Histogram, Registry } from 'prom-client';
import { parseCopyText } from './copy-text.js';
import type { Pool } from './db.js';
import { REDIS_REPLY } from './errors.js';
import { CHUNK_MAX_CHARS, CHUNK_MAX_EVENTS, LOG_MAX_ENTRIES, PUBLISH_SCRIPT, liveKeys } from './live-channel.js';
import type { Logger } from './logger.js';
import { LATENCY_BUCKETS } from './metrics.js';
import type { WriteResult } from './pg-batch-write.js';
import type { Redis } from './redis.js';
import type { QueuedEntry } from './stream-entry.js';
import type { Config } from './config.js';

/** What the worker's live publisher needs. */
export interface LivePublisherDeps {
  /** The worker's client (a single Redis or a Cluster); the publisher only sends commands on it. */
  readonly redis: Redis;
  /** Read only when a batch had duplicates, to tell which keyed events are stored. */
  readonly pool: Pool;
  readonly streamKey: string;
  /** How long a tenant's batches stay in its resume log (LIVE_RESUME_WINDOW_MS). */
  readonly resumeWindowMs: number;
  /** How long the tags of published entries are remembered (liveDedupWindowMs); resumeWindowMs when omitted. */
  readonly dedupWindowMs?: number;
  readonly logger: Logger;
  readonly registry?: Registry;
}

/** Publishes committed batches to the API's live view, for the tenants someone is listening to. */
export interface LivePublisher {
  /**
   * The flusher's commit hook: queues the batch and returns at once. The promise resolves (never rejects) once
   * the batch is published, or given up (Redis failed, the backlog is full, the publisher closed): the flusher
   * acknowledges the entries only then, so a worker that dies before publishing leaves them pending and the
   * worker that takes them over publishes them. `committedAtMs` (epoch ms, now when omitted) travels with the
   * batch to the API, which measures commit → send from it.
   */
  readonly onCommitted: (entries: readonly QueuedEntry[], result: WriteResult, committedAtMs?: number) => Promise<void>;
  /** Batches queued or being published. */
  pending(): number;
  /** Publishes what is queued (within `timeoutMs`), then stops taking batches; idempotent. */
  close(timeoutMs?: number): Promise<void>;
}

/**
 * How long published entries are remembered, so that a redelivered one is not shown twice: at least the resume
 * window, and long enough for another worker to take over what a dead one left pending (CLAIM_IDLE_MS, checked
 * every half of it) many times over.
 */
export function liveDedupWindowMs(config: Pick<Config, 'liveResumeWindowMs' | 'claimIdleMs'>): number {
  return Math.max(config.liveResumeWindowMs, 10 * config.claimIdleMs);
}

// Batches waiting while Redis is slow: past this the newest are dropped (counted), so a stalled Redis never
// grows the worker's memory; the write path never waits for the live view.
const MAX_PENDING_BATCHES = 64;
const LOG_EVERY_MS = 10_000;
// Tries of one batch while Redis fails: 200 ms, then doubling, about 6 s in all (a cluster failover's length).
const PUBLISH_ATTEMPTS = 6;
const RETRY_BASE_MS = 200;

/** One committed event of a listened tenant, as the live view will forward it. */
interface Outgoing {
  readonly line: string;
  readonly key: string | null;
  readonly id: string;
}

/** The stored events of one queue entry (or a slice of a large one), under a tag that is the same on every delivery. */
interface Part {
  readonly tag: string;
  readonly body: string;
  readonly events: number;
}

/** ISO text of epoch-millisecond text; events of one batch mostly share their times, so the last few are kept. */
function createIsoCache(): (ms: string) => string {
  const cache = new Map<string, string>();
  return (ms) => {
    let text = cache.get(ms);
    if (text === undefined) {
      if (cache.size >= 64) cache.clear();
      text = new Date(Number(ms)).toISOString();
      cache.set(ms, text);
    }
    return text;
  };
}
const jsonOrNull = (text: string | null) => (text === null ? 'null' : JSON.stringify(text));

/**
 * One COPY row (lib/copy-text.ts columns) as a body line `<type>\t<event JSON>`. The JSON is assembled from the
 * row's text: `data` is already JSON and `value` a JavaScript number's text, so neither is parsed again.
 */
function toLine(row: string, iso: (ms: string) => string): Outgoing {
  const f = row.split('\t');
  const type = parseCopyText(f[2]!)!;
  const key = parseCopyText(f[6]!);
  const value = f[8] === '\\N' ? 'null' : f[8]!;
  const data = parseCopyText(f[9]!) ?? 'null';
  const json =
    `{"id":"${f[0]}","type":${JSON.stringify(type)},"timestamp":"${iso(f[3]!)}","received_at":"${iso(f[4]!)}",` +
    `"source":${jsonOrNull(parseCopyText(f[5]!))},"idempotency_key":${jsonOrNull(key)},"priority":"${f[7]}","value":${value},"data":${data}}`;
  return { line: `${type}\t${json}\n`, id: f[0]!, key };
}

/** The events of one entry's COPY rows. */
function entryEvents(rows: string, iso: (ms: string) => string): Outgoing[] {
  const events: Outgoing[] = [];
  let start = 0;
  while (start < rows.length) {
    const end = rows.indexOf('\n', start);
    events.push(toLine(rows.slice(start, end), iso));
    start = end + 1;
  }
  return events;
}

/**
 * An entry's events as parts of at most CHUNK_MAX_EVENTS events and about CHUNK_MAX_CHARS characters; the first
 * part is tagged with the entry's queue id, the next ones `#1`, `#2`…: the same split, hence the same tags,
 * whenever the entry is delivered, since the events it stores do not change.
 */
function entryParts(queueId: string, events: readonly Outgoing[]): Part[] {
  const parts: Part[] = [];
  let body = '';
  let count = 0;
  const push = () => {
    parts.push({ tag: parts.length === 0 ? queueId : `${queueId}#${parts.length}`, body, events: count });
    body = '';
    count = 0;
  };
  for (const { line } of events) {
    if (count > 0 && (count >= CHUNK_MAX_EVENTS || body.length + line.length > CHUNK_MAX_CHARS)) push();
    body += line;
    count++;
  }
  if (count > 0) push();
  return parts;
}

/** Groups parts into script calls of at most CHUNK_MAX_EVENTS events and about CHUNK_MAX_CHARS characters. */
function groupParts(parts: readonly Part[]): Part[][] {
  const groups: Part[][] = [];
  let group: Part[] = [];
  let events = 0;
  let chars = 0;
  for (const part of parts) {
    if (group.length > 0 && (events + part.events > CHUNK_MAX_EVENTS || chars + part.body.length > CHUNK_MAX_CHARS)) {
      groups.push(group);
      group = [];
      events = 0;
      chars = 0;
    }
    group.push(part);
    events += part.events;
    chars += part.body.length;
  }
  if (group.length > 0) groups.push(group);
  return groups;
}

/** Keyed events of `events` whose key this very event owns (the others were refused as duplicates). */
async function keyOwners(pool: Pool, tenant: string, events: readonly Outgoing[]): Promise<Set<string>> {
  const keyed = events.filter((e) => e.key !== null);
  if (keyed.length === 0) return new Set();
  const { rows } = await pool.query<{ event_id: string }>(
    `SELECT k.event_id FROM idempotency_keys k
     JOIN unnest($2::text[], $3::uuid[]) AS c(key, id) ON k.tenant = $1 AND k.key = c.key AND k.event_id = c.id`,
    [tenant, keyed.map((e) => e.key), keyed.map((e) => e.id)],
  );
  return new Set(rows.map((r) => r.event_id));
}

interface Job {
  readonly entries: readonly QueuedEntry[];
  readonly result: WriteResult;
  readonly committedAtMs: number;
  readonly done: () => void;
}

/**
 * The worker's half of the live view. After each commit the flusher hands its batch over; the publisher asks
 * Redis which of the batch's tenants have live listeners (their markers) and, for those only, appends the
 * stored events to the tenant's resume log and publishes them on its channel (one script call per chunk).
 * Tenants nobody watches cost one small round trip per batch and nothing else.
 *
 * Delivery to the live view is at least once, shown once: the flusher acknowledges a batch only after it is
 * published, so entries whose worker died in between come back (reclaimed, written again as a no-op) and are
 * published by the worker that takes them over; the publish script skips any entry it published before (by its
 * queue id), so an entry published just before its worker died is not shown again. What a batch stored is
 * known without asking which rows were new: an event without an idempotency key is stored (now or by an earlier
 * delivery), a keyed one when its key belongs to it.
 */
export function createLivePublisher(deps: LivePublisherDeps): LivePublisher {
  const { redis, pool, resumeWindowMs } = deps;
  const dedupWindowMs = deps.dedupWindowMs ?? resumeWindowMs;
  const keys = liveKeys(deps.streamKey);
  const log = deps.logger.child({ scope: 'live-publisher' });
  const registers = [deps.registry ?? new Registry()];
  const published = new Counter({
    name: 'floodgate_live_published_events_total',
    help: 'Durable events published to the live view (tenants with listeners only).',
    registers,
  });
  const repeats = new Counter({
    name: 'floodgate_live_publish_repeats_total',
    help: 'Events of redelivered entries not published again: they were published before the worker that wrote them stopped.',
    registers,
  });
  const publishedBytes = new Counter({
    name: 'floodgate_live_published_bytes_total',
    help: 'Bytes of event text the worker sent Redis for the live view (each is stored in the resume log and published once).',
    registers,
  });
  const dropped = new Counter({
    name: 'floodgate_live_publish_dropped_events_total',
    help: 'Durable events of listened tenants not published to the live view, by reason (backlog: Redis too slow; redis_error; db_error).',
    labelNames: ['reason'],
    registers,
  });
  for (const reason of ['backlog', 'redis_error', 'db_error']) dropped.inc({ reason }, 0);
  const duration = new Histogram({
    name: 'floodgate_live_publish_duration_seconds',
    help: 'Time to publish one committed batch to the live view (listener check included), by whether anyone listened.',
    labelNames: ['listened'],
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const sha = createHash('sha1').update(PUBLISH_SCRIPT).digest('hex');
  const queue: Job[] = [];
  let running: Promise<void> | undefined;
  let closed = false;
  let lastLog = 0;

  const logRarely = (fields: object, message: string) => {
    if (Date.now() - lastLog < LOG_EVERY_MS) return;
    lastLog = Date.now();
    log.error(fields, message);
  };

  /** Runs the publish script for one group of parts; returns which parts it published ('1') or skipped ('0'). */
  async function runScript(tenant: string, group: readonly Part[], committedAtMs: number): Promise<string> {
    const args: (string | number)[] = [keys.log(tenant), keys.published(tenant), keys.channel(tenant), resumeWindowMs, LOG_MAX_ENTRIES];
    args.push(dedupWindowMs, Math.round(committedAtMs));
    for (const part of group) args.push(part.tag, part.body);
    let reply: unknown;
    try {
      reply = await redis.evalsha(sha, 2, ...args);
    } catch (err) {
      // First use on this Redis (or after SCRIPT FLUSH): EVAL loads it, later calls send only the hash.
      if (!String((err as Error).message).startsWith(REDIS_REPLY.noScript)) throw err;
      reply = await redis.eval(PUBLISH_SCRIPT, 2, ...args);
    }
    return String((reply as [unknown, string])[1] ?? '');
  }

  async function publishTenant(
    tenant: string,
    entries: readonly QueuedEntry[],
    hadDuplicates: boolean,
    committedAtMs: number,
  ): Promise<void> {
    const iso = createIsoCache();
    const mine = entries
      .filter((q) => q.entry.tenant === tenant)
      .map((q) => ({ queueId: q.queueId, events: entryEvents(q.entry.rows, iso) }));
    if (hadDuplicates) {
      // Some events were not inserted: refused duplicates of a key, or stored by an earlier delivery.
      let owners: Set<string>;
      try {
        owners = await keyOwners(
          pool,
          tenant,
          mine.flatMap((m) => m.events),
        );
      } catch (err) {
        dropped.inc(
          { reason: 'db_error' },
          mine.reduce((n, m) => n + m.events.length, 0),
        );
        logRarely({ err, tenant }, 'could not tell stored events from duplicates; batch not published to the live view');
        return;
      }
      for (const m of mine) m.events = m.events.filter((e) => e.key === null || owners.has(e.id));
    }
    const parts = mine.flatMap((m) => entryParts(m.queueId, m.events));
    const groups = groupParts(parts);
    for (const part of parts) publishedBytes.inc(Buffer.byteLength(part.body));
    // Sent back to back on one connection (one slot on a cluster): Redis runs them, and subscribers see them, in
    // this order.
    const outcomes = await Promise.all(groups.map((group) => runScript(tenant, group, committedAtMs)));
    groups.forEach((group, g) => group.forEach((part, i) => (outcomes[g]![i] === '0' ? repeats : published).inc(part.events)));
  }

  /** Which of `tenants` have a listener: one MGET on a single Redis, one GET per tenant (pipelined) on a cluster. */
  async function listenedOf(tenants: readonly string[]): Promise<string[]> {
    const markerKeys = tenants.map((t) => keys.listening(t));
    const markers = redis.isCluster ? await Promise.all(markerKeys.map((k) => redis.get(k))) : await redis.mget(...markerKeys);
    return tenants.filter((_, i) => markers[i] !== null);
  }

  async function publish(entries: readonly QueuedEntry[], result: WriteResult, committedAtMs: number): Promise<void> {
    const started = performance.now();
    const tenants = [...new Set(entries.map((q) => q.entry.tenant))];
    let listened: string[] = [];
    for (let attempt = 1; ; attempt++) {
      try {
        listened = await listenedOf(tenants);
        for (const tenant of listened) await publishTenant(tenant, entries, result.duplicates > 0, committedAtMs);
        break;
      } catch (err) {
        // Publishing again is harmless (the script skips what it published before), so a failover of a tenant's
        // master (a few seconds on a cluster) delays its batches rather than losing them from the live view.
        if (attempt < PUBLISH_ATTEMPTS && !closed) {
          await new Promise((resolve) => setTimeout(resolve, RETRY_BASE_MS * 2 ** (attempt - 1)));
          continue;
        }
        const lost = entries.filter((q) => listened.includes(q.entry.tenant)).reduce((n, q) => n + q.entry.count, 0);
        if (lost > 0) dropped.inc({ reason: 'redis_error' }, lost);
        logRarely({ err }, 'could not publish a committed batch to the live view');
        break;
      }
    }
    duration.observe({ listened: listened.length > 0 ? 'yes' : 'no' }, (performance.now() - started) / 1000);
  }

  async function drain(): Promise<void> {
    for (let job = queue.shift(); job; job = queue.shift()) {
      await publish(job.entries, job.result, job.committedAtMs).catch((err: unknown) => logRarely({ err }, 'live publishing failed'));
      job.done();
    }
    running = undefined;
  }

  let closing: Promise<void> | undefined;
  return {
    onCommitted(entries, result, committedAtMs = Date.now()) {
      if (closed || entries.length === 0) return Promise.resolve();
      if (queue.length >= MAX_PENDING_BATCHES) {
        // Whether anyone listens is unknown without asking Redis: count every event of the batch.
        dropped.inc({ reason: 'backlog' }, result.inserted);
        logRarely({ pending: queue.length }, 'live publishing falls behind; dropping a batch');
        return Promise.resolve();
      }
      return new Promise<void>((done) => {
        queue.push({ entries, result, committedAtMs, done });
        running ??= drain();
      });
    },
    pending: () => queue.length + (running ? 1 : 0),
    close(timeoutMs = 5000) {
      closing ??= (async () => {
        closed = true;
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
        await Promise.race([running ?? Promise.resolve(), timeout]);
        clearTimeout(timer);
        for (const job of queue.splice(0)) job.done();
      })();
      return closing;
    },
  };
}
