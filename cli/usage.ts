import { SCENARIO_QUESTIONS, SCENARIOS } from '../loadtest/scenarios.js';

/** A mistake in how the command was called: printed with the usage, exit 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Throws UsageError when a command that takes no arguments was given some. */
export function noArguments(command: string, args: readonly string[]): void {
  if (args.length > 0) throw new UsageError(`${command} takes no arguments, got "${args.join(' ')}"`);
}

/** The help of one command: its synopsis lines, a one-line summary for the overview, and the details. */
interface CommandHelp {
  readonly synopsis: readonly string[];
  readonly summary: string;
  readonly details: string;
  /** False for a command group whose actions are listed in the overview one by one. */
  readonly overview?: boolean;
}

const CONFIG_NOTE = 'Configuration comes from environment variables (see docs/configuration.md).';
const EXIT_NOTE = 'Exit status: 0 done, 1 failure or invalid configuration, 2 wrong usage.';
// Padded to the longest name so that no name runs into its question.
const SCENARIO_WIDTH = Math.max(...SCENARIOS.map((name) => name.length)) + 2;
const SCENARIO_LIST = SCENARIOS.map((name) => `  ${name.padEnd(SCENARIO_WIDTH)}${SCENARIO_QUESTIONS[name]}`).join('\n');

/**
 * Every command's help, keyed by its words (`keys create`). One entry per command: the overview and
 * `floodgate <command> --help` are both printed from here.
 */
export const COMMAND_HELP = {
  start: {
    synopsis: ['start'],
    summary: 'migrate, then run the API and WORKERS flush workers, supervised together',
    details: `Creates the database if needed and applies migrations, then runs \`floodgate api\` and WORKERS (default 1)
\`floodgate worker\` processes as children, restarting each with backoff if it dies (worker n serves /metrics on
WORKER_METRICS_PORT + n). When DATABASE_URL / REDIS_URL are the defaults and nothing answers there, it starts a
private PostgreSQL and Redis under .data/ first.
On SIGTERM or Ctrl-C: the API stops accepting and finishes in-flight requests, then the workers flush what
they hold, then the private servers stop.`,
  },
  api: {
    synopsis: ['api'],
    summary: 'run the API (API_PROCESSES processes, node:cluster)',
    details: `Serves POST /v1/events, the query routes, the live view and the health, admin and OpenAPI routes on
HOST:PORT with API_PROCESSES processes (node:cluster), and one aggregated /metrics on METRICS_PORT. Does not migrate: run
\`floodgate migrate\` first (or use \`floodgate start\`). SIGTERM/Ctrl-C drains in-flight requests.`,
  },
  worker: {
    synopsis: ['worker'],
    summary: 'run one flush worker',
    details: `Reads accepted requests from the Redis stream (consumer group CONSUMER_GROUP) and writes their events
into PostgreSQL exactly once; runs partition maintenance and the Postgres/Redis stats collectors; serves
/metrics on WORKER_METRICS_PORT. Run several for more throughput. SIGTERM/Ctrl-C flushes before exiting.`,
  },
  migrate: {
    synopsis: ['migrate'],
    summary: 'create the database if needed, apply migrations, create partitions',
    details: `Creates the database named in DATABASE_URL if the server has none, applies the migrations not yet
applied (db/migrations, in order, under an advisory lock so concurrent starters are safe) and creates the
daily partitions ahead. Refuses to run when an applied migration file was edited since.`,
  },
  keys: {
    synopsis: ['keys create|list|revoke|rotate …'],
    summary: 'manage API keys (floodgate keys <action> --help for each)',
    overview: false,
    details: `Actions:
  keys create --tenant NAME [...]   create a key (floodgate keys create --help)
  keys list                         list keys, never the secret
  keys revoke <id|prefix>           revoke a key
  keys rotate <id|prefix>           give a key a new secret (floodgate keys rotate --help)`,
  },
  'keys create': {
    synopsis: [
      'keys create --tenant NAME [--scopes ingest,read,admin] [--admin] [--priority critical|normal|low]',
      '            [--max-priority critical|normal|low] [--expires-in 30d] [--rate-limit PER_SECOND] [--burst N]',
    ],
    summary: 'create an API key; the key is the last line of output, shown once',
    details: `Options:
  --tenant NAME              whose events the key sends (1-64 of A-Z a-z 0-9 _ . -); required
  --scopes LIST              what the key may do, comma-separated: ingest (send events), read, admin
                             (the admin routes); default ingest
  --admin                    adds admin to --scopes (kept for older scripts)
  --priority CLASS           class of its requests when they send no X-Priority: critical, normal or low;
                             default normal, or --max-priority when that is lower
  --max-priority CLASS       the highest class the key may send (default critical)
  --expires-in DURATION      lifetime such as 90s, 15m, 24h or 30d; default never expires
  --rate-limit PER_SECOND    requests per second it may send; 0 = unlimited; default RATE_LIMIT_PER_SECOND
  --burst N                  requests it may send at once above the rate; default RATE_LIMIT_BURST
The key is printed once, as the last line of stdout:  KEY=$(floodgate keys create --tenant acme | tail -n 1)`,
  },
  'keys list': {
    synopsis: ['keys list'],
    summary: 'list keys with scopes, priority ceiling and expiry (never the secret)',
    details: 'Prints one line per key: id, tenant, prefix, scopes, priority, max_priority, created, expires, revoked and rate_limit.',
  },
  'keys revoke': {
    synopsis: ['keys revoke <id|prefix>'],
    summary: 'revoke a key; running API processes refuse it within about a second',
    details: 'Revokes the key with that id or key prefix (as shown by `floodgate keys list`). Exits 1 when no active key matches.',
  },
  'keys rotate': {
    synopsis: ['keys rotate <id|prefix> [--grace 24h]'],
    summary: 'give a key a new secret (last line of output, shown once), same settings',
    details: `Options:
  --grace DURATION           how long the old secret keeps working, such as 15m, 24h or 7d (default 24h); 0: not at all
The new secret is printed once, as the last line of stdout.`,
  },
  tenants: {
    synopsis: ['tenants set-quota|clear-quota|list …'],
    summary: "manage tenants' quotas and fair-shedding weights (floodgate tenants <action> --help for each)",
    overview: false,
    details: `Actions:
  tenants set-quota TENANT [...]    set a tenant's quotas or weight (floodgate tenants set-quota --help)
  tenants clear-quota TENANT        remove a tenant's quotas and weight
  tenants list                      list tenants with a quota or weight`,
  },
  'tenants set-quota': {
    synopsis: ['tenants set-quota TENANT [--events-per-second N|none] [--events-per-day N|none] [--weight W]'],
    summary: "a tenant's quotas on accepted events (429 quota_exceeded past them) and its weight in fair shedding",
    details: `Options (at least one):
  --events-per-second N|none   accepted events per second; none removes this quota
  --events-per-day N|none      accepted events per UTC day; none removes this quota
  --weight W                   the tenant's share in fair shedding (default 1)
API processes apply a change within QUOTA_REFRESH_MS.`,
  },
  'tenants clear-quota': {
    synopsis: ['tenants clear-quota TENANT'],
    summary: "remove a tenant's quotas and weight",
    details: 'The tenant is then limited only by its keys (rate limits) and shed with the default weight.',
  },
  'tenants list': {
    synopsis: ['tenants list'],
    summary: 'list tenants with a quota or weight',
    details: 'Prints one line per tenant that has a quota or a weight.',
  },
  loadtest: {
    synopsis: [
      'loadtest <scenario> [--url URL] [--key KEY] [--duration S] [--connections N] [--rate R] [--seed N]',
      '         [--batch-size N] [--mix C/N/L] [--capacity C] [--slo-p99 MS] [--step S] [--timeout S] [--out DIR]',
      '         [--database-url URL | --no-integrity] [--max-requests N] [--drain-timeout S] [--retry-share F] [--quiet]',
      '         [--clients N] [--delivery-slo MS]',
    ],
    summary: 'load-test a running API (scenarios and options: floodgate loadtest --help)',
    details: `Scenarios, and the question each answers (docs/loadtesting.md has more):
${SCENARIO_LIST}
Options:
  --url URL             the API to drive (default http://127.0.0.1:PORT)
  --key KEY             API key to send; without one a key for tenant "loadtest" is created and revoked after
  --duration S          seconds (scenario default otherwise)
  --connections N       concurrent connections
  --rate R              requests per second over all classes
  --seed N              the same seed sends the same events (default 1)
  --batch-size N        events per request
  --mix C/N/L           class shares critical/normal/low, e.g. 20/30/50 (default all normal)
  --capacity C          known capacity in req/s (overload skips its ramp)
  --slo-p99 MS          latency objective the ramp holds (default 50)
  --step S              seconds per ramp step
  --timeout S           client timeout per request (default 10)
  --out DIR             write the JSON and text reports there
  --database-url URL    database for the integrity check (default DATABASE_URL)
  --no-integrity        skip the integrity check
  --max-requests N      stop after N requests
  --drain-timeout S     how long the integrity check waits for the worker (default 60)
  --retry-share F       share of resent requests in the duplicates scenario (default 0.5)
  --quiet               no progress line per second
  --clients N           clients scenario: simulated SDK clients (--rate is then the first ramp step in events/s)
  --delivery-slo MS     clients scenario: the delivery latency objective the ramp holds
Exit status 1 when the scenario finds a problem (such as lost events).
For comparing two reports: floodgate loadtest compare --help`,
  },
  'loadtest compare': {
    synopsis: ['loadtest compare A.json B.json [--threshold 10%]'],
    summary: 'compare two reports; exit 1 when B is worse than A beyond the threshold',
    details: `Prints each figure of report A (the baseline) next to report B's, and exits 1 when any is worse in B by more
than --threshold (default 10%).`,
  },
  help: {
    synopsis: ['help [command]'],
    summary: 'this text, or the help of one command (the same as floodgate <command> --help)',
    details: 'floodgate <command> --help shows the same as floodgate help <command>.',
  },
  '--version': {
    synopsis: ['--version'],
    summary: 'print the version',
    details: 'Prints the version of this Floodgate (package.json), alone on one line.',
  },
} as const satisfies Record<string, CommandHelp>;

/** A command's words, as keys of COMMAND_HELP. */
export type HelpTopic = keyof typeof COMMAND_HELP;

const COLUMN = 30;

/** The overview: every command with its summary, then configuration and exit statuses. */
export const USAGE = [
  'usage: floodgate <command> [--help]',
  '',
  ...Object.values(COMMAND_HELP).flatMap((help: CommandHelp) => {
    if (help.overview === false) return [];
    const [first, ...rest] = help.synopsis;
    const lines = [`  ${first!}`, ...rest.map((l) => `  ${l}`)];
    const last = lines.length - 1;
    if (lines[last]!.length < COLUMN) lines[last] = `${lines[last]!.padEnd(COLUMN)}${help.summary}`;
    else lines.push(`${' '.repeat(COLUMN)}${help.summary}`);
    return lines;
  }),
  '',
  CONFIG_NOTE,
  EXIT_NOTE,
].join('\n');

/** The help of one command, as `floodgate <command> --help` prints it. */
export function commandUsage(topic: HelpTopic): string {
  const help: CommandHelp = COMMAND_HELP[topic];
  return [
    // Lines starting with a space continue the previous one; others are alternative forms.
    ...help.synopsis.map(
      (line, i) => `${i === 0 ? 'usage: floodgate ' : line.startsWith(' ') ? '                 ' : '       floodgate '}${line}`,
    ),
    '',
    help.summary.charAt(0).toUpperCase() + help.summary.slice(1) + '.',
    '',
    help.details,
    '',
    CONFIG_NOTE,
    EXIT_NOTE,
  ].join('\n');
}

/** The most specific help topic named by a command line (`keys create --tenant x` → "keys create"), if any. */
export function helpTopic(words: readonly string[]): HelpTopic | undefined {
  const [first, second] = words;
  const two = `${first} ${second}`;
  if (Object.hasOwn(COMMAND_HELP, two)) return two as HelpTopic;
  return first !== undefined && Object.hasOwn(COMMAND_HELP, first) ? (first as HelpTopic) : undefined;
}
