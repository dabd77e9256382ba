import { availableParallelism } from 'node:os';

/** One configuration variable: its name, what it does, its default and how to parse it. */
export interface ConfigVariable<T> {
  readonly name: string;
  readonly doc: string;
  /** The default as it would be written in the environment; undefined means "computed" (see `defaultDoc`). */
  readonly defaultValue: string | undefined;
  readonly defaultDoc?: string;
  readonly parse: (raw: string) => T | ParseFailure;
}

interface ParseFailure {
  readonly failure: string;
}

const fail = (failure: string): ParseFailure => ({ failure });
const isFailure = (v: unknown): v is ParseFailure => typeof v === 'object' && v !== null && 'failure' in v && Object.keys(v).length === 1;

const integer =
  (min: number, max: number) =>
  (raw: string): number | ParseFailure => {
    if (!/^-?\d+$/.test(raw.trim())) return fail(`must be a whole number, got "${raw}"`);
    const n = Number(raw);
    if (n < min || n > max) return fail(`must be between ${min} and ${max}, got ${n}`);
    return n;
  };

const oneOf =
  <T extends string>(...choices: T[]) =>
  (raw: string): T | ParseFailure =>
    (choices as string[]).includes(raw) ? (raw as T) : fail(`must be one of ${choices.join(', ')}, got "${raw}"`);

const url =
  (...protocols: string[]) =>
  (raw: string): string | ParseFailure => {
    try {
      const parsed = new URL(raw);
      if (!protocols.includes(parsed.protocol)) return fail(`must be a ${protocols.join(' or ')} URL, got "${raw}"`);
      return raw;
    } catch {
      return fail(`must be a URL, got "${raw}"`);
    }
  };

const boolean = (raw: string): boolean | ParseFailure => {
  const value = raw.trim().toLowerCase();
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  return fail(`must be true or false, got "${raw}"`);
};

const nonEmpty = (raw: string): string | ParseFailure => (raw.trim() === '' ? fail('must not be empty') : raw);

const redisKey = (raw: string): string | ParseFailure =>
  /^[A-Za-z0-9:_.{}-]{1,200}$/.test(raw) ? raw : fail(`must be 1-200 characters of [A-Za-z0-9:_.{}-], got "${raw}"`);

/** `host:port,host:port…` (empty for none). */
const hostPorts = (raw: string): { host: string; port: number }[] | ParseFailure => {
  const out: { host: string; port: number }[] = [];
  for (const part of raw
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '')) {
    const match = /^([^\s:]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/.exec(part);
    const port = Number(match?.[2]);
    if (!match || port < 1 || port > 65535) return fail(`must be comma-separated host:port pairs, got "${part}"`);
    out.push({ host: match[1]!.replace(/^\[|\]$/g, ''), port });
  }
  return out;
};

const KIB = 1024;
const MIB = 1024 * KIB;

/** Every environment variable Floodgate reads, in one place (the table in docs/configuration.md is tested against it). */
export const CONFIG_VARIABLES = {
  port: { name: 'PORT', doc: 'HTTP port of the API.', defaultValue: '8080', parse: integer(0, 65535) },
  host: { name: 'HOST', doc: 'Address the API listens on.', defaultValue: '0.0.0.0', parse: nonEmpty },
  databaseUrl: {
    name: 'DATABASE_URL',
    doc: 'PostgreSQL connection URL. The database is created by `floodgate migrate` if it does not exist.',
    defaultValue: 'postgres://postgres@127.0.0.1:5432/floodgate',
    parse: url('postgres:', 'postgresql:'),
  },
  redisUrl: {
    name: 'REDIS_URL',
    doc: 'Redis connection URL; a `/N` path selects database N.',
    defaultValue: 'redis://127.0.0.1:6379/0',
    parse: url('redis:', 'rediss:'),
  },
  redisClusterNodes: {
    name: 'REDIS_CLUSTER_NODES',
    doc: 'Comma-separated `host:port` seeds of a Redis Cluster; empty uses the single Redis at `REDIS_URL`. With a cluster the stream keys and the live-view keys of each tenant carry a hash tag; the live view and the key-revocation feed subscribe on one node (see docs/scaling.md).',
    defaultValue: '',
    parse: hostPorts,
  },
  streamShards: {
    name: 'STREAM_SHARDS',
    doc: 'Streams the accepted requests are spread over, by tenant: `<STREAM_KEY>:{s<n>}` (and a dead-letter stream per shard). 1 with a single Redis keeps the one `STREAM_KEY`.',
    defaultValue: '1',
    parse: integer(1, 1024),
  },
  redisMinReplicasAck: {
    name: 'REDIS_MIN_REPLICAS_ACK',
    doc: 'Replicas that must confirm each accepted request (Redis `WAIT`) before the API answers 202; when they do not within `REDIS_WRITE_TIMEOUT_MS` the API answers 503 `dependency_unavailable`. 0 answers once the master has it (replication is asynchronous).',
    defaultValue: '0',
    parse: integer(0, 16),
  },
  metricsPort: {
    name: 'METRICS_PORT',
    doc: "Port of the API's Prometheus endpoint (`/metrics`), aggregated across all API processes; 0 turns it off.",
    defaultValue: '9464',
    parse: integer(0, 65535),
  },
  workerMetricsPort: {
    name: 'WORKER_METRICS_PORT',
    doc: "Port of the flush worker's Prometheus endpoint (`/metrics`); 0 turns it off.",
    defaultValue: '9465',
    parse: integer(0, 65535),
  },
  metricsHost: {
    name: 'METRICS_HOST',
    doc: 'Address the `/metrics` endpoints (API and worker) listen on. Loopback by default: a scrape of the worker runs live Postgres queries, so expose it (e.g. `0.0.0.0`) only to your Prometheus, ideally with `METRICS_TOKEN`.',
    defaultValue: '127.0.0.1',
    parse: nonEmpty,
  },
  metricsToken: {
    name: 'METRICS_TOKEN',
    doc: 'When set, `/metrics` answers 401 unless the scrape sends `Authorization: Bearer <token>` (Prometheus: `authorization: { credentials: … }`). Empty: no token required.',
    defaultValue: '',
    parse: (raw: string) => raw.trim(),
  },
  metricsEnabled: {
    name: 'METRICS_ENABLED',
    doc: "`false` turns Prometheus instrumentation off: no request metrics on the API's hot path, no default process metrics and no `/metrics` endpoints (the shedder keeps its own latency window). Exists to measure what the metrics cost.",
    defaultValue: 'true',
    parse: boolean,
  },
  apiProcesses: {
    name: 'API_PROCESSES',
    doc: 'API processes (node:cluster) started by `floodgate start` and `floodgate api`.',
    defaultValue: undefined,
    defaultDoc: 'number of CPUs',
    parse: integer(1, 256),
  },
  workers: {
    name: 'WORKERS',
    doc: 'Flush worker processes started by `floodgate start`, each restarted if it dies. Worker n (from 0) serves `/metrics` on `WORKER_METRICS_PORT` + n.',
    defaultValue: '1',
    parse: integer(1, 64),
  },
  logLevel: {
    name: 'LOG_LEVEL',
    doc: 'pino log level.',
    defaultValue: 'info',
    parse: oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'),
  },
  queue: {
    name: 'QUEUE',
    doc: 'Where accepted requests wait for the flush worker: `redis` (a Redis stream) or `postgres` (the `event_queue` table; no Redis at all, for small deployments: see docs/scaling.md).',
    defaultValue: 'redis',
    parse: oneOf('redis', 'postgres'),
  },
  queuePostgresTable: {
    name: 'QUEUE_POSTGRES_TABLE',
    doc: 'With `QUEUE=postgres`: `logged` (an acknowledged event survives a Postgres crash) or `unlogged` (cheaper inserts, but a crash empties the queue: acknowledged events not yet flushed are lost). The worker sets the table to match at start.',
    defaultValue: 'logged',
    parse: oneOf('logged', 'unlogged'),
  },
  streamKey: { name: 'STREAM_KEY', doc: 'Redis stream holding accepted requests.', defaultValue: 'floodgate:events', parse: redisKey },
  deadLetterStreamKey: {
    name: 'DEAD_LETTER_STREAM_KEY',
    doc: 'Redis stream receiving entries that could not be written after `MAX_DELIVERY_ATTEMPTS`.',
    defaultValue: 'floodgate:dead-letter',
    parse: redisKey,
  },
  consumerGroup: {
    name: 'CONSUMER_GROUP',
    doc: 'Consumer group shared by the flush workers.',
    defaultValue: 'floodgate-writers',
    parse: redisKey,
  },
  maxBodyBytes: {
    name: 'MAX_BODY_BYTES',
    doc: 'Largest request body accepted on the wire (compressed or not); larger bodies get 413.',
    defaultValue: String(MIB),
    parse: integer(1 * KIB, 64 * MIB),
  },
  maxDecompressedBytes: {
    name: 'MAX_DECOMPRESSED_BYTES',
    doc: 'Largest body after gzip decompression; larger gets 413 (protects against gzip bombs).',
    defaultValue: String(MIB),
    parse: integer(1 * KIB, 64 * MIB),
  },
  maxBatchEvents: {
    name: 'MAX_BATCH_EVENTS',
    doc: 'Most events in one `{"events": [...]}` request; more gets 413.',
    defaultValue: '1000',
    parse: integer(1, 100_000),
  },
  maxEventDataBytes: {
    name: 'MAX_EVENT_DATA_BYTES',
    doc: 'Largest `data` object of one event, serialised as JSON.',
    defaultValue: String(32 * KIB),
    parse: integer(64, 16 * MIB),
  },
  redisWriteTimeoutMs: {
    name: 'REDIS_WRITE_TIMEOUT_MS',
    doc: 'How long the API waits for Redis to acknowledge a write before answering 503.',
    defaultValue: '2000',
    parse: integer(10, 60_000),
  },
  redisWriteCoalesceMs: {
    name: 'REDIS_WRITE_COALESCE_MS',
    doc: 'While ingest requests arrive less than this many ms apart, the stream write of each waits up to this long, so that the writes of requests arriving together share one write to Redis (each is still its own entry, answered once it is in Redis): up to this much latency for less CPU under load. 0 writes each at once.',
    defaultValue: '1',
    parse: integer(0, 50),
  },
  authCacheTtlMs: {
    name: 'AUTH_CACHE_TTL_MS',
    doc: 'How long a verified API key is cached in each process (unknown keys: at most 5 s). Revocations and rotations reach every process within about a second through Redis pub/sub; while that feed is down, cached keys are looked up again every second instead.',
    defaultValue: '30000',
    parse: integer(0, 3_600_000),
  },
  authFailureBurst: {
    name: 'AUTH_FAILURE_BURST',
    doc: "Failed authentications (unknown, revoked or expired keys) a client address may have before it is refused with 429 `too_many_auth_failures` without a database lookup (keys already verified by the process still work); 0 turns the budget off. Per API process; behind a proxy every client shares the proxy's address.",
    defaultValue: '20',
    parse: integer(0, 1_000_000),
  },
  authFailureRatePerMinute: {
    name: 'AUTH_FAILURE_RATE_PER_MINUTE',
    doc: 'How fast that budget refills: failed authentications per minute per client address.',
    defaultValue: '60',
    parse: integer(1, 1_000_000),
  },
  flushBatchEvents: {
    name: 'FLUSH_BATCH_EVENTS',
    doc: 'The worker writes when it holds this many events…',
    defaultValue: '5000',
    parse: integer(1, 1_000_000),
  },
  flushIntervalMs: {
    name: 'FLUSH_INTERVAL_MS',
    doc: '…or when its oldest buffered event is this old.',
    defaultValue: '100',
    parse: integer(1, 60_000),
  },
  claimIdleMs: {
    name: 'CLAIM_IDLE_MS',
    doc: 'Entries pending this long with a consumer are reclaimed (XAUTOCLAIM) by another worker.',
    defaultValue: '30000',
    parse: integer(100, 86_400_000),
  },
  maxDeliveryAttempts: {
    name: 'MAX_DELIVERY_ATTEMPTS',
    doc: 'Attempts to write an entry before it is moved to the dead-letter stream.',
    defaultValue: '5',
    parse: integer(1, 1000),
  },
  retentionDays: {
    name: 'RETENTION_DAYS',
    doc: 'Days of events kept; older partitions are dropped and older timestamps rejected.',
    defaultValue: '30',
    parse: integer(1, 3650),
  },
  partitionsAheadDays: {
    name: 'PARTITIONS_AHEAD_DAYS',
    doc: 'Daily partitions created ahead of today.',
    defaultValue: '3',
    parse: integer(2, 365),
  },
  dedupWindowHours: {
    name: 'DEDUP_WINDOW_HOURS',
    doc: 'How long an idempotency key is remembered: in Postgres (pruned by the worker every 10 minutes past it) and in Redis, where each key answered costs about 150 bytes for as long.',
    defaultValue: '24',
    parse: integer(1, 24 * 365),
  },
  dbPoolSize: { name: 'DB_POOL_SIZE', doc: 'PostgreSQL connections per process.', defaultValue: '10', parse: integer(1, 1000) },
  shutdownTimeoutMs: {
    name: 'SHUTDOWN_TIMEOUT_MS',
    doc: 'Grace period for in-flight requests and the final flush on SIGTERM/SIGINT.',
    defaultValue: '10000',
    parse: integer(0, 600_000),
  },
  shedMode: {
    name: 'SHED_MODE',
    doc: 'Load shedding: `off`, `shadow` (decide, count and log, admit everything) or `enforce`.',
    defaultValue: 'enforce',
    parse: oneOf('off', 'shadow', 'enforce'),
  },
  shedTargetP99Ms: {
    name: 'SHED_TARGET_P99_MS',
    doc: 'Latency SLO the shedder holds: p99 of admitted requests, in ms; the target of normal traffic, and of low and critical traffic unless they have their own (`SHED_TARGET_P99_LOW_MS`, `SHED_TARGET_P99_CRITICAL_MS`).',
    defaultValue: '50',
    parse: integer(1, 60_000),
  },
  shedTargetP99CriticalMs: {
    name: 'SHED_TARGET_P99_CRITICAL_MS',
    doc: 'Latency target of critical requests alone: p99 of admitted critical requests, in ms; 0 takes half of `SHED_TARGET_P99_MS`. At most `SHED_TARGET_P99_MS`. Over it, the shedder sheds low, then normal traffic, and lowers the limit on non-critical requests in flight (`SHED_NONCRITICAL_MAX_IN_FLIGHT`).',
    defaultValue: '0',
    parse: integer(0, 60_000),
  },
  shedTargetP99LowMs: {
    name: 'SHED_TARGET_P99_LOW_MS',
    doc: 'Latency target of low requests alone, in ms; 0 takes `SHED_TARGET_P99_MS`. At least `SHED_TARGET_P99_MS`.',
    defaultValue: '0',
    parse: integer(0, 60_000),
  },
  shedNoncriticalMaxInFlight: {
    name: 'SHED_NONCRITICAL_MAX_IN_FLIGHT',
    doc: 'Ceiling of the adaptive limit on normal and low requests in flight per API process (critical ones are never limited): past the limit a request whose body has arrived waits before it is parsed, normal before low, newest first, so that critical requests never queue behind them. 0 turns the limit off.',
    defaultValue: '64',
    parse: integer(0, 1_000_000),
  },
  shedQueueTimeoutMs: {
    name: 'SHED_QUEUE_TIMEOUT_MS',
    doc: 'How long a normal or low request may wait for the in-flight limit before it is refused with 503 `overloaded` (reason `queue`).',
    defaultValue: '1000',
    parse: integer(1, 600_000),
  },
  shedRefusalDelayMs: {
    name: 'SHED_REFUSAL_DELAY_MS',
    doc: 'How long the answer to a refused normal or low request (503 `overloaded`) is held, in ms; 0 answers at once. A client that sends its next request as soon as it has an answer (one per connection) then sends at most one a connection per delay, so a flood of refusals cannot take the event loop from critical requests. Holding an answer costs a socket and a timer, no CPU; the default is the shortest `Retry-After` the answer carries, so a client that honours it loses nothing.',
    defaultValue: '1000',
    parse: integer(0, 10_000),
  },
  shedTargetEventLoopDelayMs: {
    name: 'SHED_TARGET_EVENT_LOOP_DELAY_MS',
    doc: 'Event-loop delay the shedder holds, in ms: the longest timer lateness in each 250 ms tick. A backstop for stalls the latency window cannot see (admitted requests already carry the delay in their latency), so it sits above the latency target: measured, a 40 ms target tripped on scheduler noise and shed normal traffic the latency target did not ask to shed.',
    defaultValue: '100',
    parse: integer(1, 60_000),
  },
  shedBusyLoopPercent: {
    name: 'SHED_BUSY_LOOP_PERCENT',
    doc: "Latency over its target counts as this process's overload only while its event loop was busy (event-loop utilisation) at least this share of the latency window, in %. Below it the requests are slow for a reason refusing them does not remove (waits on Redis or Postgres, CPU taken by other processes, bursts from clients sending in step), and refusing would only throw deliveries away; the event-loop delay, the backlog, the in-flight limit and the hard limits still act. 0 counts latency whatever the loop does.",
    defaultValue: '80',
    parse: integer(0, 100),
  },
  shedBacklogLowEntries: {
    name: 'SHED_BACKLOG_LOW_ENTRIES',
    doc: 'Stream backlog (entries not yet written) where shedding of non-critical traffic starts…',
    defaultValue: '200000',
    parse: integer(1, 1_000_000_000),
  },
  shedBacklogHighEntries: {
    name: 'SHED_BACKLOG_HIGH_ENTRIES',
    doc: '…and where all non-critical traffic is shed (Redis memory stays bounded while Postgres is down).',
    defaultValue: '1000000',
    parse: integer(2, 1_000_000_000),
  },
  shedHardMaxInFlight: {
    name: 'SHED_HARD_MAX_IN_FLIGHT',
    doc: 'Hard safety limit per API process: past this many requests in flight (body read, not yet answered) even critical requests are refused, except those of a tenant holding less than an equal share of them.',
    defaultValue: '2000',
    parse: integer(1, 1_000_000),
  },
  shedHardEventLoopDelayMs: {
    name: 'SHED_HARD_EVENT_LOOP_DELAY_MS',
    doc: 'Hard safety limit: past this event-loop delay even critical requests are refused.',
    defaultValue: '1000',
    parse: integer(10, 600_000),
  },
  breakerErrorThresholdPercent: {
    name: 'BREAKER_ERROR_THRESHOLD_PERCENT',
    doc: 'A dependency breaker (Redis write in the API, Postgres write in the worker) opens when this share of its calls in the window fail…',
    defaultValue: '50',
    parse: integer(1, 100),
  },
  breakerVolumeThreshold: {
    name: 'BREAKER_VOLUME_THRESHOLD',
    doc: '…once the window holds at least this many calls (a single failure in a quiet minute does not open it).',
    defaultValue: '10',
    parse: integer(1, 1_000_000),
  },
  breakerWindowMs: {
    name: 'BREAKER_WINDOW_MS',
    doc: 'Rolling window over which a breaker counts failures.',
    defaultValue: '10000',
    parse: integer(100, 3_600_000),
  },
  breakerResetTimeoutMs: {
    name: 'BREAKER_RESET_TIMEOUT_MS',
    doc: 'How long a dependency breaker stays open before it lets one trial call through (half-open).',
    defaultValue: '5000',
    parse: integer(10, 3_600_000),
  },
  gateResetTimeoutMs: {
    name: 'GATE_RESET_TIMEOUT_MS',
    doc: 'How long a class gate stays open before the next request of its class tests whether the controller still sheds the class entirely. Short: the test costs nothing, and traffic should return within seconds.',
    defaultValue: '1000',
    parse: integer(10, 3_600_000),
  },
  gateOpenAfterMs: {
    name: 'GATE_OPEN_AFTER_MS',
    doc: "A non-critical class's gate opens once the controller has shed that class entirely for this long.",
    defaultValue: '5000',
    parse: integer(0, 3_600_000),
  },
  dbWriteTimeoutMs: {
    name: 'DB_WRITE_TIMEOUT_MS',
    doc: "Longest a batch write to Postgres (the worker's flush, the API's direct write of critical events) may take, lock waits included; past it the statement is cancelled and counts as a failure.",
    defaultValue: '10000',
    parse: integer(10, 600_000),
  },
  rateLimitStore: {
    name: 'RATE_LIMIT_STORE',
    doc: 'Where rate-limit and quota buckets live: `redis` (one bucket per key or tenant shared by every API process and host, leased in slices; while Redis cannot be asked each process enforces its share) or `local` (each process enforces rate / `API_PROCESSES` alone).',
    defaultValue: 'redis',
    parse: oneOf('redis', 'local'),
  },
  quotaRefreshMs: {
    name: 'QUOTA_REFRESH_MS',
    doc: "How often each API process reloads the tenants' quotas and fair-share weights (`floodgate tenants set-quota`); a change applies within this long.",
    defaultValue: '10000',
    parse: integer(100, 3_600_000),
  },
  bodyTimeoutMs: {
    name: 'BODY_TIMEOUT_MS',
    doc: "Longest an admitted request may take to send its whole body, from the moment the API starts reading it; past it the answer is 408 `body_timeout` and the connection is closed. A slow or stalled upload holds a socket, never the server's in-flight capacity.",
    defaultValue: '10000',
    parse: integer(100, 600_000),
  },
  maxInFlightPerKey: {
    name: 'MAX_IN_FLIGHT_PER_KEY',
    doc: 'Requests one API key may have open at once in each API process, waiting for their body included; past it 429 `too_many_in_flight`. 0: no cap.',
    defaultValue: '1000',
    parse: integer(0, 1_000_000),
  },
  maxConnectionsPerKey: {
    name: 'MAX_CONNECTIONS_PER_KEY',
    doc: 'Connections one API key may hold open in each API process (a connection belongs to the key of its latest request); past it 429 `too_many_connections` and the connection is closed. 0: no cap.',
    defaultValue: '1000',
    parse: integer(0, 1_000_000),
  },
  rateLimitPerSecond: {
    name: 'RATE_LIMIT_PER_SECOND',
    doc: "Default request rate per API key (token bucket, requests per second); 0 means unlimited. A key's own limit (`keys create --rate-limit`) overrides it.",
    defaultValue: '0',
    parse: integer(0, 10_000_000),
  },
  rateLimitBurst: {
    name: 'RATE_LIMIT_BURST',
    doc: "Default bucket size: requests a key may send at once after being idle; 0 means one second's worth of its rate.",
    defaultValue: '0',
    parse: integer(0, 10_000_000),
  },
  liveEnabled: {
    name: 'LIVE_ENABLED',
    doc: '`false` turns the live view off: the API has no `GET /v1/events/live` and no subscription, and the worker publishes nothing (not even the per-batch check for listeners).',
    defaultValue: 'true',
    parse: boolean,
  },
  liveMaxConnections: {
    name: 'LIVE_MAX_CONNECTIONS',
    doc: 'Live connections (SSE and WebSocket) one API process holds; past it new ones get 503 `overloaded`.',
    defaultValue: '10000',
    parse: integer(1, 1_000_000),
  },
  liveMaxBufferBytes: {
    name: 'LIVE_MAX_BUFFER_BYTES',
    doc: "Bytes a live connection may have waiting for its client before it is closed as a slow consumer (the SSE `close` event or WebSocket code 1008): the bound on what one connection costs the API's memory.",
    defaultValue: String(256 * KIB),
    parse: integer(4 * KIB, 64 * MIB),
  },
  liveResumeWindowMs: {
    name: 'LIVE_RESUME_WINDOW_MS',
    doc: "How long published events stay in a tenant's resume log in Redis, so a reconnecting client resumes after its `Last-Event-ID` (a busy tenant's log is also capped at 512 batches).",
    defaultValue: '60000',
    parse: integer(1000, 3_600_000),
  },
  queryPoolSize: {
    name: 'QUERY_POOL_SIZE',
    doc: "PostgreSQL connections per API process for the query API (`GET /v1/stats`, `GET /v1/events`), apart from the ingest path's, so slow reads never take the connections critical writes and key lookups need.",
    defaultValue: '4',
    parse: integer(1, 1000),
  },
  queryTimeoutMs: {
    name: 'QUERY_TIMEOUT_MS',
    doc: 'Longest a query of the query API may run; past it Postgres cancels it and the client gets 503 `query_timeout`.',
    defaultValue: '10000',
    parse: integer(10, 600_000),
  },
  statsMaxBuckets: {
    name: 'STATS_MAX_BUCKETS',
    doc: 'Most buckets (`window` / `step`) one `GET /v1/stats` answer may hold; more gets 400 `too_many_buckets`. The default holds a day at one-minute steps.',
    defaultValue: '1500',
    parse: integer(1, 1_000_000),
  },
  statsMaxPoints: {
    name: 'STATS_MAX_POINTS',
    doc: 'Most points (buckets × groups) one `GET /v1/stats` answer may hold; more gets 422 `too_many_points`.',
    defaultValue: '10000',
    parse: integer(1, 10_000_000),
  },
  statsCacheMs: {
    name: 'STATS_CACHE_MS',
    doc: 'How long an API process may reuse a `GET /v1/stats` answer for the same tenant and question; 0 (the default): never, every answer is read after its request arrived and reflects every event committed before. Identical questions asked at the same moment share one read either way. See docs/analytics.md.',
    defaultValue: '0',
    parse: integer(0, 60_000),
  },
  rollupIntervalMs: {
    name: 'ROLLUP_INTERVAL_MS',
    doc: "How often the worker's maintenance loop rolls minute rollups up into the 5-minute, hour and day rollups and recomputes the buckets late events made stale.",
    defaultValue: '15000',
    parse: integer(100, 3_600_000),
  },
  rollupFoldIntervalMs: {
    name: 'ROLLUP_FOLD_INTERVAL_MS',
    doc: "How often the worker's maintenance loop folds the minute deltas that batch writes append to rollup_pending into rollup_minute. Readers add the pending deltas, so answers are exact either way; a shorter interval keeps the pending rows a read adds up fewer, a longer one updates each minute row less often.",
    defaultValue: '1000',
    parse: integer(50, 60_000),
  },
  rollupLagMs: {
    name: 'ROLLUP_LAG_MS',
    doc: 'How far behind now the roll-up watermark stays: minutes older than this are rolled up, younger ones are read from the minute rollups. Events arriving for a minute below the watermark are late: each marks its bucket stale until the next roll-up.',
    defaultValue: '120000',
    parse: integer(0, 86_400_000),
  },
} as const satisfies Record<string, ConfigVariable<unknown>>;

type Variables = typeof CONFIG_VARIABLES;
type Parsed<V> = V extends ConfigVariable<infer T> ? Exclude<T, ParseFailure> : never;

/** The validated, frozen configuration. */
export type Config = { readonly [K in keyof Variables]: Parsed<Variables[K]> };

/** Thrown by `loadConfig` with every problem found, one per line. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** The value a variable takes when it is not set. */
export function defaultFor(variable: ConfigVariable<unknown>): string {
  if (variable.defaultValue !== undefined) return variable.defaultValue;
  if (variable.name === 'API_PROCESSES') return String(availableParallelism());
  throw new Error(`no default for ${variable.name}`);
}

/** The configuration with every variable at its default: the one source of default values. */
export function defaultConfig(): Config {
  return loadConfig({});
}

/** Parses and validates the environment once; throws a ConfigError listing every problem. */
export function loadConfig(env: Readonly<Record<string, string | undefined>>, overrides: Partial<Config> = {}): Config {
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  for (const [key, variable] of Object.entries(CONFIG_VARIABLES) as [keyof Variables, ConfigVariable<unknown>][]) {
    if (key in overrides) {
      out[key] = overrides[key];
      continue;
    }
    const raw = env[variable.name];
    const value = variable.parse(raw === undefined || raw === '' ? defaultFor(variable) : raw);
    if (isFailure(value)) problems.push(`${variable.name} ${value.failure}`);
    else out[key] = value;
  }
  if (problems.length === 0) {
    const c = out as Config;
    if (c.maxDecompressedBytes < c.maxBodyBytes) {
      problems.push('MAX_DECOMPRESSED_BYTES must be at least MAX_BODY_BYTES');
    }
    if (c.workerMetricsPort > 0 && c.workerMetricsPort + c.workers - 1 > 65535) {
      problems.push('WORKER_METRICS_PORT + WORKERS - 1 must be at most 65535 (each worker takes the next port)');
    }
    if (c.shedTargetP99CriticalMs > c.shedTargetP99Ms) {
      problems.push('SHED_TARGET_P99_CRITICAL_MS must be at most SHED_TARGET_P99_MS (critical traffic gets the tighter target)');
    }
    if (c.shedTargetP99LowMs !== 0 && c.shedTargetP99LowMs < c.shedTargetP99Ms) {
      problems.push('SHED_TARGET_P99_LOW_MS must be at least SHED_TARGET_P99_MS (low traffic gets the looser target)');
    }
    if (c.shedBacklogHighEntries <= c.shedBacklogLowEntries) {
      problems.push('SHED_BACKLOG_HIGH_ENTRIES must be above SHED_BACKLOG_LOW_ENTRIES');
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(out) as Config;
}
