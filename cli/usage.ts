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
  keys revoke <id|prefix>     revoke a key
  loadtest <scenario> [--url URL] [--key KEY] [--duration S] [--connections N] [--rate R] [--seed N]
           [--batch-size N] [--mix C/N/L] [--capacity C] [--slo-p99 MS] [--timeout S] [--out DIR]
           [--database-url URL | --no-integrity] [--max-requests N] [--drain-timeout S] [--quiet]
                              load-test the API at --url (default 127.0.0.1:PORT); scenarios: smoke, steady,
                              ramp, spike, overload, soak, batch, duplicates (see docs/loadtesting.md)
  loadtest compare A.json B.json [--threshold 10%]
                              compare two reports; exit 1 when B is worse than A beyond the threshold
  help                        this text

Configuration comes from environment variables (see docs/configuration.md).
Exit status: 0 done, 1 failure or invalid configuration, 2 wrong usage.`;
