/** A mistake in how the command was called: printed with the usage, exit 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Throws UsageError when a command that takes no arguments was given some. */
export function noArguments(command: string, args: readonly string[]): void {
  if (args.length > 0) throw new UsageError(`${command} takes no arguments, got "${args.join(' ')}"`);
}

/** The help text: every subcommand and the exit statuses scripts can rely on. */
export const USAGE = `usage: floodgate <command>

  start                       migrate, then run the API and one flush worker, supervised together
                              (starts a private PostgreSQL/Redis under .data/ when the default URLs do not answer)
  api                         run the API (API_PROCESSES processes, node:cluster)
  worker                      run one flush worker
  migrate                     create the database if needed, apply migrations, create partitions
  keys create --tenant NAME [--scopes ingest,read,admin] [--priority critical|normal|low]
              [--max-priority critical|normal|low] [--expires-in 30d] [--rate-limit PER_SECOND] [--burst N]
                              create an API key; the key is the last line of output, shown once
                              (scopes default ingest; --admin adds admin; --max-priority is the highest class
                              the key may send; rate limit: requests per second, 0 unlimited)
  keys list                   list keys with scopes, priority ceiling and expiry (never the secret)
  keys revoke <id|prefix>     revoke a key; running API processes refuse it within about a second
  keys rotate <id|prefix> [--grace 24h]
                              give a key a new secret (last line of output, shown once), same settings;
                              the old secret keeps working for the grace period (0: not at all)
  tenants set-quota TENANT [--events-per-second N|none] [--events-per-day N|none] [--weight W]
                              a tenant's quotas on accepted events (429 quota_exceeded past them) and its
                              weight in fair shedding (default 1); API processes apply it within QUOTA_REFRESH_MS
  tenants clear-quota TENANT  remove a tenant's quotas and weight
  tenants list                list tenants with a quota or weight
  loadtest <scenario> [--url URL] [--key KEY] [--duration S] [--connections N] [--rate R] [--seed N]
           [--batch-size N] [--mix C/N/L] [--capacity C] [--slo-p99 MS] [--timeout S] [--out DIR]
           [--database-url URL | --no-integrity] [--max-requests N] [--drain-timeout S] [--quiet]
           [--clients N] [--delivery-slo MS]
                              load-test the API at --url (default 127.0.0.1:PORT); scenarios: smoke, steady,
                              ramp, spike, overload, soak, batch, duplicates, and per tenant noisy-neighbour,
                              slow-upload, unauthenticated-flood (see docs/loadtesting.md); clients (simulated SDK
                              clients: --clients, --rate = first ramp step in events/s; see docs/sdk.md)
  loadtest compare A.json B.json [--threshold 10%]
                              compare two reports; exit 1 when B is worse than A beyond the threshold
  help                        this text

Configuration comes from environment variables (see docs/configuration.md).
Exit status: 0 done, 1 failure or invalid configuration, 2 wrong usage.`;
