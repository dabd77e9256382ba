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
const isFailure = (v: unknown): v is ParseFailure =>
  typeof v === 'object' && v !== null && 'failure' in v && Object.keys(v).length === 1;

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
  metricsPort: {
    name: 'METRICS_PORT',
    doc: 'Port of the API\'s Prometheus endpoint (`/metrics`), aggregated across all API processes; 0 turns it off.',
    defaultValue: '9464',
    parse: integer(0, 65535),
  },
  workerMetricsPort: {
    name: 'WORKER_METRICS_PORT',
    doc: 'Port of the flush worker\'s Prometheus endpoint (`/metrics`); 0 turns it off.',
    defaultValue: '9465',
    parse: integer(0, 65535),
  },
  metricsEnabled: {
    name: 'METRICS_ENABLED',
    doc: '`false` turns Prometheus instrumentation off: no request metrics on the API\'s hot path, no default process metrics and no `/metrics` endpoints (the shedder keeps its own latency window). Exists to measure what the metrics cost.',
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
  logLevel: {
    name: 'LOG_LEVEL',
    doc: 'pino log level.',
    defaultValue: 'info',
    parse: oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'),
  },
  streamKey: { name: 'STREAM_KEY', doc: 'Redis stream holding accepted requests.', defaultValue: 'floodgate:events', parse: redisKey },
  deadLetterStreamKey: {
    name: 'DEAD_LETTER_STREAM_KEY',
    doc: 'Redis stream receiving entries that could not be written after `MAX_DELIVERY_ATTEMPTS`.',
    defaultValue: 'floodgate:dead-letter',
    parse: redisKey,
  },
  consumerGroup: { name: 'CONSUMER_GROUP', doc: 'Consumer group shared by the flush workers.', defaultValue: 'floodgate-writers', parse: redisKey },
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
  maxBatchEvents: { name: 'MAX_BATCH_EVENTS', doc: 'Most events in one `{"events": [...]}` request; more gets 413.', defaultValue: '1000', parse: integer(1, 100_000) },
  maxEventDataBytes: { name: 'MAX_EVENT_DATA_BYTES', doc: 'Largest `data` object of one event, serialised as JSON.', defaultValue: String(32 * KIB), parse: integer(64, 16 * MIB) },
  redisWriteTimeoutMs: {
    name: 'REDIS_WRITE_TIMEOUT_MS',
    doc: 'How long the API waits for Redis to acknowledge a write before answering 503.',
    defaultValue: '2000',
    parse: integer(10, 60_000),
  },
  authCacheTtlMs: { name: 'AUTH_CACHE_TTL_MS', doc: 'How long a verified (or unknown) API key is cached in each process.', defaultValue: '30000', parse: integer(0, 3_600_000) },
  flushBatchEvents: { name: 'FLUSH_BATCH_EVENTS', doc: 'The worker writes when it holds this many events…', defaultValue: '5000', parse: integer(1, 1_000_000) },
  flushIntervalMs: { name: 'FLUSH_INTERVAL_MS', doc: '…or when its oldest buffered event is this old.', defaultValue: '100', parse: integer(1, 60_000) },
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
  retentionDays: { name: 'RETENTION_DAYS', doc: 'Days of events kept; older partitions are dropped and older timestamps rejected.', defaultValue: '30', parse: integer(1, 3650) },
  partitionsAheadDays: { name: 'PARTITIONS_AHEAD_DAYS', doc: 'Daily partitions created ahead of today.', defaultValue: '3', parse: integer(2, 365) },
  dedupWindowHours: { name: 'DEDUP_WINDOW_HOURS', doc: 'How long an idempotency key is remembered.', defaultValue: '24', parse: integer(1, 24 * 365) },
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
  shedTargetP99Ms: { name: 'SHED_TARGET_P99_MS', doc: 'Latency SLO the shedder holds: p99 of admitted requests, in ms.', defaultValue: '50', parse: integer(1, 60_000) },
  shedTargetEventLoopDelayMs: {
    name: 'SHED_TARGET_EVENT_LOOP_DELAY_MS',
    doc: 'Event-loop delay the shedder holds, in ms: the longest timer lateness in each 250 ms tick. A backstop for stalls the latency window cannot see (admitted requests already carry the delay in their latency), so it sits above the latency target: measured, a 40 ms target tripped on scheduler noise and shed normal traffic the latency target did not ask to shed.',
    defaultValue: '100',
    parse: integer(1, 60_000),
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
    doc: 'Hard safety limit per API process: past this many requests in flight even critical requests are refused.',
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
  breakerWindowMs: { name: 'BREAKER_WINDOW_MS', doc: 'Rolling window over which a breaker counts failures.', defaultValue: '10000', parse: integer(100, 3_600_000) },
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
    doc: 'A non-critical class\'s gate opens once the controller has shed that class entirely for this long.',
    defaultValue: '5000',
    parse: integer(0, 3_600_000),
  },
  dbWriteTimeoutMs: {
    name: 'DB_WRITE_TIMEOUT_MS',
    doc: 'Longest a batch write to Postgres (the worker\'s flush, the API\'s direct write of critical events) may take, lock waits included; past it the statement is cancelled and counts as a failure.',
    defaultValue: '10000',
    parse: integer(10, 600_000),
  },
  rateLimitPerSecond: {
    name: 'RATE_LIMIT_PER_SECOND',
    doc: 'Default request rate per API key (token bucket, requests per second); 0 means unlimited. A key\'s own limit (`keys create --rate-limit`) overrides it.',
    defaultValue: '0',
    parse: integer(0, 10_000_000),
  },
  rateLimitBurst: {
    name: 'RATE_LIMIT_BURST',
    doc: 'Default bucket size: requests a key may send at once after being idle; 0 means one second\'s worth of its rate.',
    defaultValue: '0',
    parse: integer(0, 10_000_000),
  },
  queryPoolSize: {
    name: 'QUERY_POOL_SIZE',
    doc: 'PostgreSQL connections per API process for the query API (`GET /v1/stats`, `GET /v1/events`), apart from the ingest path\'s, so slow reads never take the connections critical writes and key lookups need.',
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
    if (c.shedBacklogHighEntries <= c.shedBacklogLowEntries) {
      problems.push('SHED_BACKLOG_HIGH_ENTRIES must be above SHED_BACKLOG_LOW_ENTRIES');
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(out) as Config;
}
