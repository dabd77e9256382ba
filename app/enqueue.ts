import { createHash } from 'node:crypto';
import type { Breaker } from '../lib/breaker.js';
import type { Config } from '../lib/config.js';
import type { Pool } from '../lib/db.js';
import { REDIS_REPLY } from '../lib/errors.js';
import type { Priority, ValidEvent } from '../lib/event-schema.js';
import { dedupHorizonMs, findStoredIds } from '../lib/idempotency-keys.js';
import type { Logger } from '../lib/logger.js';
import type { Redis } from '../lib/redis.js';
import { ENTRY_FIELD, encodeEntry, entryHeader, entryRows } from '../lib/stream-entry.js';
import type { Enqueuer } from '../lib/queue.js';
import { guardedWrite } from './guarded-write.js';
import { createWriteCoalescer } from './write-coalescer.js';
import type { ApiMetrics } from './metrics.js';

export type { Enqueuer };

/**
 * Puts an accepted request's events on the stream and says which id answers each of them.
 *
 * Postgres stores each (tenant, idempotency key) once: it is the source of truth. The API answers before the
 * worker stores, so a repeated key must be recognised here to be answered with the id stored first rather than
 * a fresh one that will never be stored. In one Lua script, atomically: look the request's keys up in Redis
 * (`<stream>:idem:<tenant>:<key>` → event id), XADD only the events whose key is new, then claim those keys with
 * a TTL of the dedup window plus one maintenance interval (as long as Postgres may still refuse a new event under
 * the key). A key in Redis therefore always names an event on the stream or already stored, and both survive or
 * vanish together when Redis restarts (same persistence).
 *
 * A Redis miss is a new key only if Redis remembers every key claimed within that horizon. A marker,
 * `<stream>:idem-since`, holds when Redis began remembering: set when absent (a new or wiped Redis) and reset
 * when this API wrote keyed events straight to Postgres (the critical fallback, which Redis never saw). While
 * the marker is younger than the horizon, the request's keys are looked up in Postgres first, and those found
 * there are answered with their stored id and not queued. The script compares the marker with the one the
 * process relied on and refuses (nothing written) when it changed, so a wiped Redis is noticed at once.
 */
/** What the enqueuer writes to and reports to. */
export interface EnqueueDeps {
  readonly config: Config;
  readonly redis: Redis;
  readonly pool: Pool;
  /** Guards every Redis write; a Postgres lookup never runs inside it (a slow Postgres must not open it). */
  readonly redisBreaker: Breaker;
  readonly metrics: ApiMetrics;
  readonly logger: Logger;
}

// KEYS: 1 stream, 2 marker, 3.. the dedup keys of the keyed events.
// ARGV: 1 entry field, 2-3 entry header prefix and suffix, 4 key TTL (ms), 5 now (ms), 6 the marker the caller
// relies on ('' when it looked the keys up in Postgres), 7 '1' to reset the marker, 8 event count, then per
// event: id, COPY row, index of its dedup key in KEYS (0 without a key).
// Reads first, then the XADD, then the claims: should the XADD fail (out of memory), nothing was claimed.
// `#!lua` (Redis 7): an out-of-memory server refuses the script before it runs rather than midway.
const ENQUEUE_SCRIPT = `#!lua
local marker = redis.call('GET', KEYS[2])
if ARGV[6] ~= '' and marker ~= ARGV[6] then
  return {'stale', marker or ''}
end
local n = tonumber(ARGV[8])
local answers, rows, claimed, order = {}, {}, {}, {}
for i = 1, n do
  local b = 8 + (i - 1) * 3
  local id, k = ARGV[b + 1], tonumber(ARGV[b + 3])
  local prior = false
  if k > 0 then
    prior = claimed[KEYS[k]] or redis.call('GET', KEYS[k])
    if not prior then
      claimed[KEYS[k]] = id
      order[#order + 1] = KEYS[k]
    end
  end
  if prior then
    answers[i] = prior
  else
    answers[i] = id
    rows[#rows + 1] = ARGV[b + 2]
  end
end
if #rows > 0 then
  redis.call('XADD', KEYS[1], '*', ARGV[1], ARGV[2] .. #rows .. ARGV[3] .. table.concat(rows))
end
for _, key in ipairs(order) do
  redis.call('SET', key, claimed[key], 'PX', ARGV[4])
end
if ARGV[7] == '1' or not marker then
  marker = ARGV[5]
  redis.call('SET', KEYS[2], marker)
end
local reply = {'ok', marker}
for i = 1, n do
  reply[i + 2] = answers[i]
end
return reply
`;
const ENQUEUE_SHA = createHash('sha1').update(ENQUEUE_SCRIPT).digest('hex');

/**
 * The Redis key remembering which event id a tenant's idempotency key was first answered with. Under the stream
 * key, like the marker, so that one prefix finds everything a stream owns in Redis.
 */
export function dedupKey(streamKey: string, tenant: string, key: string): string {
  // Tenants are [A-Za-z0-9_.-]: the first ':' after the prefix ends the tenant.
  return `${streamKey}:idem:${tenant}:${key}`;
}

/** The Redis key holding when Redis began remembering every key it was asked to claim (epoch ms). */
export function dedupMarkerKey(streamKey: string): string {
  return `${streamKey}:idem-since`;
}

/** Longest wait for the Postgres lookup; past it the answer comes from Redis alone (see `lookUpStored`). */
const LOOKUP_TIMEOUT_MS = 500;

type ScriptReply = ['ok', string, ...string[]] | ['stale', string];

/** Creates the enqueuer (see `Enqueuer`); it holds no connection of its own. */
export function createEnqueuer(deps: EnqueueDeps): Enqueuer {
  const { config, redis, pool, redisBreaker, metrics } = deps;
  const log = deps.logger.child({ scope: 'enqueue' });
  const horizonMs = dedupHorizonMs(config.dedupWindowHours);
  const markerKey = dedupMarkerKey(config.streamKey);
  // The marker as this process last saw it; its direct writes of keyed events, and how many of them a script has
  // since reset the marker for (counted, so that a reset in flight does not stand for a direct write after it).
  let markerSince: string | undefined;
  let directWrites = 0;
  let resetThrough = 0;
  let lastLookupWarning = 0;

  // Plain XADDs of requests arriving together share a write to Redis (app/write-coalescer.ts says when).
  const coalescer = createWriteCoalescer(config.redisWriteCoalesceMs);

  /** Runs one Redis write through the breaker, timing it as the XADD latency. */
  const guarded = <T>(write: () => Promise<T>): Promise<T> => guardedWrite(redisBreaker, metrics.redisWriteDuration, write);

  function vouches(now: number): boolean {
    return markerSince !== undefined && directWrites === resetThrough && now - Number(markerSince) >= horizonMs;
  }

  /**
   * Postgres's ids for the keys, or an empty map when it cannot answer in time: then Redis alone decides.
   * Refusing instead would make keyed ingest depend on Postgres, which the stream exists to ride out; what is
   * stored stays exactly-once either way, only the id answered to a repeat could then be one never stored.
   */
  async function lookUpStored(tenant: string, keys: string[]): Promise<Map<string, string>> {
    if (keys.length === 0) return new Map();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${LOOKUP_TIMEOUT_MS} ms`)), LOOKUP_TIMEOUT_MS);
    });
    try {
      return await Promise.race([findStoredIds(pool, tenant, keys), timeout]);
    } catch (err) {
      if (Date.now() - lastLookupWarning > 10_000) {
        lastLookupWarning = Date.now();
        log.warn({ err }, 'idempotency keys could not be looked up in Postgres: repeated keys are answered from Redis alone');
      }
      return new Map();
    } finally {
      clearTimeout(timer);
    }
  }

  async function runScript(keys: string[], args: (string | number)[]): Promise<ScriptReply> {
    try {
      return (await redis.evalsha(ENQUEUE_SHA, keys.length, ...keys, ...args)) as ScriptReply;
    } catch (err) {
      if (!(err instanceof Error && err.message.startsWith(REDIS_REPLY.noScript))) throw err;
      return (await redis.eval(ENQUEUE_SCRIPT, keys.length, ...keys, ...args)) as ScriptReply;
    }
  }

  /**
   * The script over the events Postgres did not answer. Relying on the marker (`trustMarker` and it vouches),
   * Postgres is not asked, and the result is undefined when the marker changed meanwhile: nothing was written.
   */
  async function attempt(
    tenant: string,
    priority: Priority,
    receivedAt: number,
    events: readonly ValidEvent[],
    trustMarker: boolean,
  ): Promise<string[] | undefined> {
    const now = Date.now();
    const relyOn = trustMarker && vouches(now) ? markerSince! : '';
    const keyed = events.filter((e) => e.idempotencyKey !== null).map((e) => e.idempotencyKey!);
    const stored = relyOn ? new Map<string, string>() : await lookUpStored(tenant, keyed);
    const queued = events.filter((e) => e.idempotencyKey === null || !stored.has(e.idempotencyKey));
    const answers = new Map<ValidEvent, string>();
    if (queued.length > 0) {
      const keys = [config.streamKey, markerKey];
      const perEvent: (string | number)[] = [];
      const rows = entryRows(tenant, priority, receivedAt, queued);
      queued.forEach((e, i) => {
        let index = 0;
        if (e.idempotencyKey !== null) index = keys.push(dedupKey(config.streamKey, tenant, e.idempotencyKey));
        perEvent.push(e.id, rows[i]!, index);
      });
      const { prefix, suffix } = entryHeader(tenant, priority, receivedAt);
      const through = directWrites;
      const reset = through > resetThrough;
      const reply = await guarded(() =>
        runScript(keys, [ENTRY_FIELD, prefix, suffix, horizonMs, now, relyOn, reset ? '1' : '0', queued.length, ...perEvent]),
      );
      // '' when the marker is gone (a wiped Redis): unknown until a script that does not rely on it recreates it.
      markerSince = reply[1] || undefined;
      if (reply[0] === 'stale') return undefined;
      if (reset) resetThrough = Math.max(resetThrough, through);
      queued.forEach((e, i) => answers.set(e, reply[2 + i]!));
    }
    return events.map((e) => answers.get(e) ?? stored.get(e.idempotencyKey!)!);
  }

  return {
    async enqueue(tenant, priority, receivedAt, events) {
      if (directWrites === resetThrough && events.every((e) => e.idempotencyKey === null)) {
        // The common case: nothing to deduplicate, one plain XADD (auto-pipelined with its neighbours).
        const entry = encodeEntry(tenant, priority, receivedAt, events);
        // Held before the breaker, not inside it: the breaker and the write latency see Redis's time alone.
        // Critical's write never waits for a batch: it is issued at once and takes the held ones along.
        await coalescer.run(() => guarded(() => redis.xadd(config.streamKey, '*', ENTRY_FIELD, entry)), priority === 'critical');
        return events.map((e) => e.id);
      }
      // The marker changed under a first attempt that relied on it (Redis wiped, or another process reset it):
      // the second looks the keys up in Postgres, and cannot be refused.
      return (await attempt(tenant, priority, receivedAt, events, true)) ?? (await attempt(tenant, priority, receivedAt, events, false))!;
    },
    async afterDirectWrite(tenant, events) {
      const keys = events.filter((e) => e.idempotencyKey !== null).map((e) => e.idempotencyKey!);
      if (keys.length === 0) return events.map((e) => e.id);
      directWrites++;
      let stored = new Map<string, string>();
      try {
        stored = await findStoredIds(pool, tenant, keys);
      } catch (err) {
        // The events are stored: answering 503 would be false. Only a repeated key's answer can be off.
        log.error({ err }, 'stored critical events, but could not read back the ids stored under their idempotency keys');
      }
      return events.map((e) => (e.idempotencyKey === null ? e.id : (stored.get(e.idempotencyKey) ?? e.id)));
    },
  };
}
