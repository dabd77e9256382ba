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
import type { StreamEntry } from './stream-entry.js';

/** What the worker's live publisher needs. */
export interface LivePublisherDeps {
  /** The worker's client; the publisher only sends commands on it. */
  readonly redis: Redis;
  /** Read only when a batch had duplicates, to tell which keyed events were stored. */
  readonly pool: Pool;
  readonly streamKey: string;
  /** How long a tenant's batches stay in its resume log (LIVE_RESUME_WINDOW_MS). */
  readonly resumeWindowMs: number;
  readonly logger: Logger;
  readonly registry?: Registry;
}

/** Publishes committed batches to the API's live view, for the tenants someone is listening to. */
export interface LivePublisher {
  /** The flusher's commit hook: queues the batch and returns at once; never throws. */
  readonly onCommitted: (entries: readonly StreamEntry[], result: WriteResult) => void;
  /** Batches queued or being published. */
  pending(): number;
  /** Publishes what is queued (within `timeoutMs`), then stops taking batches; idempotent. */
  close(timeoutMs?: number): Promise<void>;
}

// Batches waiting while Redis is slow: past this the newest are dropped (counted), so a stalled Redis never
// grows the worker's memory; the write path never waits for the live view.
const MAX_PENDING_BATCHES = 64;
const LOG_EVERY_MS = 10_000;

/** One committed event of a listened tenant, as the live view will forward it. */
interface Outgoing {
  readonly line: string;
  /** Only for events with an idempotency key in a batch that had duplicates: who owns the key decides. */
  readonly key: string | null;
  readonly id: string;
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
function toLine(row: string, iso: (ms: string) => string): { line: string; id: string; key: string | null } {
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

/** Splits lines into bodies of at most CHUNK_MAX_EVENTS events and about CHUNK_MAX_CHARS characters. */
function chunk(lines: readonly string[]): string[] {
  const bodies: string[] = [];
  let body = '';
  let count = 0;
  for (const line of lines) {
    if (count > 0 && (count >= CHUNK_MAX_EVENTS || body.length + line.length > CHUNK_MAX_CHARS)) {
      bodies.push(body);
      body = '';
      count = 0;
    }
    body += line;
    count++;
  }
  if (count > 0) bodies.push(body);
  return bodies;
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

/**
 * The worker's half of the live view. After each commit the flusher hands its batch over; the publisher asks
 * Redis which of the batch's tenants have live listeners (one MGET of their markers) and, for those only,
 * appends the events to the tenant's resume log and publishes them on its channel (one script call per chunk).
 * Tenants nobody watches cost one small round trip per batch and nothing else.
 *
 * Events refused as duplicates of an idempotency key are not published; a batch that stored nothing publishes
 * nothing. Unkeyed events of a redelivered entry that shares a batch with new events cannot be told from new
 * ones without another query per event, and are published again (same event ids).
 */
export function createLivePublisher(deps: LivePublisherDeps): LivePublisher {
  const { redis, pool, resumeWindowMs } = deps;
  const keys = liveKeys(deps.streamKey);
  const log = deps.logger.child({ scope: 'live-publisher' });
  const registers = [deps.registry ?? new Registry()];
  const published = new Counter({
    name: 'floodgate_live_published_events_total',
    help: 'Durable events published to the live view (tenants with listeners only).',
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
  const queue: { entries: readonly StreamEntry[]; result: WriteResult }[] = [];
  let running: Promise<void> | undefined;
  let closed = false;
  let lastLog = 0;

  const logRarely = (fields: object, message: string) => {
    if (Date.now() - lastLog < LOG_EVERY_MS) return;
    lastLog = Date.now();
    log.error(fields, message);
  };

  async function runScript(tenant: string, body: string): Promise<void> {
    const args = [keys.log(tenant), keys.channel(tenant), body, resumeWindowMs, LOG_MAX_ENTRIES];
    try {
      await redis.evalsha(sha, 1, ...args);
    } catch (err) {
      // First use on this Redis (or after SCRIPT FLUSH): EVAL loads it, later calls send only the hash.
      if (!String((err as Error).message).startsWith(REDIS_REPLY.noScript)) throw err;
      await redis.eval(PUBLISH_SCRIPT, 1, ...args);
    }
  }

  async function publishTenant(tenant: string, entries: readonly StreamEntry[], hadDuplicates: boolean): Promise<number> {
    let events: Outgoing[] = [];
    const iso = createIsoCache();
    for (const entry of entries) {
      if (entry.tenant !== tenant) continue;
      let start = 0;
      const rows = entry.rows;
      while (start < rows.length) {
        const end = rows.indexOf('\n', start);
        const { line, id, key } = toLine(rows.slice(start, end), iso);
        events.push({ line, id, key: hadDuplicates ? key : null });
        start = end + 1;
      }
    }
    if (hadDuplicates) {
      let owners: Set<string>;
      try {
        owners = await keyOwners(pool, tenant, events);
      } catch (err) {
        dropped.inc({ reason: 'db_error' }, events.length);
        logRarely({ err, tenant }, 'could not tell stored events from duplicates; batch not published to the live view');
        return 0;
      }
      events = events.filter((e) => e.key === null || owners.has(e.id));
    }
    const bodies = chunk(events.map((e) => e.line));
    for (const body of bodies) publishedBytes.inc(Buffer.byteLength(body));
    // Sent back to back on one connection: Redis runs them, and subscribers see them, in this order.
    await Promise.all(bodies.map((body) => runScript(tenant, body)));
    return events.length;
  }

  async function publish(entries: readonly StreamEntry[], result: WriteResult): Promise<void> {
    const started = performance.now();
    const tenants = [...new Set(entries.map((e) => e.tenant))];
    let listened: string[] = [];
    try {
      const markers = await redis.mget(...tenants.map((t) => keys.listening(t)));
      listened = tenants.filter((_, i) => markers[i] !== null);
      for (const tenant of listened) published.inc(await publishTenant(tenant, entries, result.duplicates > 0));
    } catch (err) {
      const lost = entries.filter((e) => listened.includes(e.tenant)).reduce((n, e) => n + e.count, 0);
      if (lost > 0) dropped.inc({ reason: 'redis_error' }, lost);
      logRarely({ err }, 'could not publish a committed batch to the live view');
    }
    duration.observe({ listened: listened.length > 0 ? 'yes' : 'no' }, (performance.now() - started) / 1000);
  }

  async function drain(): Promise<void> {
    for (let job = queue.shift(); job; job = queue.shift()) {
      await publish(job.entries, job.result).catch((err: unknown) => logRarely({ err }, 'live publishing failed'));
    }
    running = undefined;
  }

  let closing: Promise<void> | undefined;
  return {
    onCommitted(entries, result) {
      if (closed || result.inserted === 0 || entries.length === 0) return;
      if (queue.length >= MAX_PENDING_BATCHES) {
        // Whether anyone listens is unknown without asking Redis: count every event of the batch.
        dropped.inc({ reason: 'backlog' }, result.inserted);
        logRarely({ pending: queue.length }, 'live publishing falls behind; dropping a batch');
        return;
      }
      queue.push({ entries, result });
      running ??= drain();
    },
    pending: () => queue.length + (running ? 1 : 0),
    close(timeoutMs = 5000) {
      closing ??= (async () => {
        closed = true;
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
        await Promise.race([running ?? Promise.resolve(), timeout]);
        clearTimeout(timer);
        queue.length = 0;
      })();
      return closing;
    },
  };
}
