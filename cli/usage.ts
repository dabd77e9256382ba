/** A mistake in how the command was called: printed with the usage, exit 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const USAGE = `usage: floodgate <command>

  start                       migrate, then run the API and a flush worker together
  api                         run the API (API_PROCESSES processes, node:cluster)
  worker                      run one flush worker
  migrate                     create the database if needed, apply migrations, create partitions
  keys create --tenant NAME [--priority critical|normal|low] [--admin]
  keys list
  keys revoke <id|prefix>
  help                        this text

Configuration comes from environment variables; see the README.`;
