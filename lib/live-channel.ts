/**
 * What the flush worker and the API's live view share: the Redis names of a tenant's live channel, resume log
 * and listener marker, and the wire format of one published batch. The worker writes it (lib/live-publisher.ts),
 * the API reads it (lib/live-subscriber.ts); nothing else knows it.
 *
 * A published batch is a tenant's durable events from one commit, at most CHUNK_MAX_EVENTS of them. Its body is
 * one line per event, `<type>\t<event JSON>\n` (a type has no tab or newline, and JSON.stringify escapes both),
 * so the API filters and forwards events without parsing JSON. The resume log (a capped Redis stream per
 * tenant) holds the body under the entry id Redis assigned; the channel message is
 * `<entry id>\n@<commit ms>\n<body>`: the commit line carries when the worker committed the batch (epoch ms), so
 * the API can measure commit → send. It has no tab, so a reader that does not know it skips it as no event, and
 * a message without it (`<entry id>\n<body>`, from a worker that does not send it) reads the same minus the time.
 */

/** Redis names of one tenant's live view, under the configured stream key (tests get private ones). */
export interface LiveKeys {
  /** Pub/sub channel the worker publishes to and the API subscribes to. */
  channel(tenant: string): string;
  /** Capped stream of recent batches, read to resume a connection or to catch up after a lost subscription. */
  log(tenant: string): string;
  /** Present (with a TTL) while some API process holds a live connection of the tenant. */
  listening(tenant: string): string;
  /** Sorted set of the queue entries already published (member: entry tag, score: Redis time in ms). */
  published(tenant: string): string;
}

/**
 * The live keys under `streamKey` (STREAM_KEY): `<streamKey>:live:{<tenant>}:{channel,log,listening,published}`.
 * The tenant is the hash tag, so on a Redis Cluster a tenant's keys share one slot (the publish script touches
 * the log and the published set together) while different tenants spread over the masters.
 */
export function liveKeys(streamKey: string): LiveKeys {
  const prefix = (tenant: string) => `${streamKey}:live:{${tenant}}`;
  return {
    channel: (tenant) => `${prefix(tenant)}:channel`,
    log: (tenant) => `${prefix(tenant)}:log`,
    listening: (tenant) => `${prefix(tenant)}:listening`,
    published: (tenant) => `${prefix(tenant)}:published`,
  };
}

/** Field of a log entry holding the body. */
export const LOG_FIELD = 'b';
/** Most events in one published batch: bounds one message, one log entry and one replay step. */
export const CHUNK_MAX_EVENTS = 500;
/** Most body characters in one published batch (an event of maximal `data` still fits alone). */
export const CHUNK_MAX_CHARS = 128 * 1024;
/**
 * Most entries a tenant's resume log keeps, whatever the window: at most CHUNK_MAX_CHARS each, this caps the log
 * of one busy tenant at 64 MiB of Redis memory (a quiet one keeps far less: the window trims it first).
 */
export const LOG_MAX_ENTRIES = 512;
/** How long a listener marker lives; the API refreshes it every third of this while it has connections. */
export const LISTENING_TTL_MS = 15_000;

/** One durable event as the live view forwards it. */
export interface LiveEvent {
  readonly type: string;
  /** The event as JSON, exactly what a client receives. */
  readonly json: string;
  /** Its position in the tenant's live order: what `Last-Event-ID` resumes after. */
  readonly cursor: string;
}

/** One published batch of a tenant, in the order the worker committed it. */
export interface LiveBatch {
  /** Id of the batch's resume log entry (`<ms>-<seq>`, Redis stream id). */
  readonly id: string;
  readonly events: readonly LiveEvent[];
  /** When the worker committed it (epoch ms, the worker's clock); only on channel messages that carry it. */
  readonly committedAtMs?: number;
}

/** A position in a tenant's live order: log entry id and the event's index in that entry. */
export interface Cursor {
  readonly ms: number;
  readonly seq: number;
  readonly index: number;
}

const CURSOR = /^(\d{1,15})-(\d{1,15})-(\d{1,6})$/;
const ENTRY_ID = /^(\d{1,15})-(\d{1,15})$/;

/** Parses a cursor (`<ms>-<seq>-<index>`, as sent in an SSE `id:`); null when it is not one. */
export function parseCursor(text: string): Cursor | null {
  const m = CURSOR.exec(text.trim());
  return m ? { ms: Number(m[1]), seq: Number(m[2]), index: Number(m[3]) } : null;
}

/** The cursor text of event `index` of log entry `id`. */
export function formatCursor(id: string, index: number): string {
  return `${id}-${index}`;
}

/** The log entry id a cursor points into. */
export function cursorEntryId(cursor: Cursor): string {
  return `${cursor.ms}-${cursor.seq}`;
}

/** Orders two log entry ids (`<ms>-<seq>`) as Redis does: negative, zero or positive. */
export function compareEntryIds(a: string, b: string): number {
  const ma = ENTRY_ID.exec(a);
  const mb = ENTRY_ID.exec(b);
  if (!ma || !mb) throw new Error(`not a stream entry id: ${ma ? b : a}`);
  return Number(ma[1]) - Number(mb[1]) || Number(ma[2]) - Number(mb[2]);
}

/** Reads the events of a body (`<type>\t<json>\n` lines) published under log entry `id`. */
export function parseBody(id: string, body: string): LiveBatch {
  const events: LiveEvent[] = [];
  let start = 0;
  while (start < body.length) {
    let end = body.indexOf('\n', start);
    if (end < 0) end = body.length;
    const tab = body.indexOf('\t', start);
    if (tab > start && tab < end) {
      events.push({ type: body.slice(start, tab), json: body.slice(tab + 1, end), cursor: formatCursor(id, events.length) });
    }
    start = end + 1;
  }
  return { id, events };
}

const COMMIT_LINE = /^@(\d{1,15})\n/;

/** Reads a channel message (`<entry id>\n[@<commit ms>\n]<body>`); null when it is not one. */
export function parseMessage(message: string): LiveBatch | null {
  const newline = message.indexOf('\n');
  if (newline < 0) return null;
  const id = message.slice(0, newline);
  if (!ENTRY_ID.test(id)) return null;
  const rest = message.slice(newline + 1);
  const commit = COMMIT_LINE.exec(rest);
  if (!commit) return parseBody(id, rest);
  return { ...parseBody(id, rest.slice(commit[0].length)), committedAtMs: Number(commit[1]) };
}

/**
 * Appends the parts of one batch that were not published before to a tenant's resume log and publishes them,
 * atomically, with the entry id Redis assigned. Returns that id ('' when every part had been published before)
 * and one flag per part, '1' published now or '0' published before.
 * KEYS: log, published set; ARGV: channel, window ms, max entries, dedup ms, commit ms (epoch, the worker's
 * clock; only the channel message carries it, not the log), then pairs of (part tag, part body).
 *
 * A part is the stored events of one queue entry (or a slice of a large one) and its tag names that entry in its
 * queue, the same on every delivery. `ZADD NX` of the tag tells whether the part was published before (its
 * worker died after publishing and before acknowledging, and the entry came back): the log and the channel then
 * carry each part once, so every connection and every resume sees each event once.
 *
 * The log is trimmed by age (Redis's own clock, the one its ids use) and by length, and expires a window after
 * its last batch; the published set forgets tags older than the dedup span: a tenant nobody listens to any more
 * leaves nothing behind.
 */
export const PUBLISH_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local parts = {}
local flags = {}
for i = 6, #ARGV, 2 do
  if redis.call('ZADD', KEYS[2], 'NX', now, ARGV[i]) == 1 then
    parts[#parts + 1] = ARGV[i + 1]
    flags[#flags + 1] = '1'
  else
    flags[#flags + 1] = '0'
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%d', now - tonumber(ARGV[4])))
redis.call('PEXPIRE', KEYS[2], ARGV[4])
if #parts == 0 then return {'', table.concat(flags)} end
local body = table.concat(parts)
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', '${LOG_FIELD}', body)
redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%d', now - tonumber(ARGV[2])))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[1], id .. '\\n@' .. ARGV[5] .. '\\n' .. body)
return {id, table.concat(flags)}`;
