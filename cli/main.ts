import { ConfigError, loadConfig, type Config } from '../lib/config.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { apiCommand } from './api-command.js';
import { keysCommand, parseKeysArgs } from './keys-command.js';
import { loadtestCommand, parseLoadtestArgs } from './loadtest-command.js';
import { migrateCommand } from './migrate-command.js';
import { startCommand } from './start-command.js';
import { parseTenantsArgs, tenantsCommand } from './tenants-command.js';
import { noArguments, USAGE, UsageError } from './usage.js';
import { workerCommand } from './worker-command.js';

/** A subcommand: `parse` checks its arguments (UsageError, before any config or connection); `run` does the work. */
interface Command {
  parse(args: readonly string[]): (config: Config, logger: Logger) => Promise<void>;
}

const noArgs = (name: string, run: (config: Config, logger: Logger) => Promise<void>): Command => ({
  parse(args) {
    noArguments(name, args);
    return run;
  },
});

const COMMANDS: Record<string, Command> = {
  start: noArgs('start', startCommand),
  api: noArgs('api', apiCommand),
  worker: noArgs('worker', workerCommand),
  migrate: noArgs('migrate', (config) => migrateCommand(config)),
  keys: {
    parse(args) {
      const parsed = parseKeysArgs(args);
      return (config) => keysCommand(config, parsed);
    },
  },
  tenants: {
    parse(args) {
      const parsed = parseTenantsArgs(args);
      return (config) => tenantsCommand(config, parsed);
    },
  },
  loadtest: {
    parse(args) {
      const parsed = parseLoadtestArgs(args);
      return (config) => loadtestCommand(config, parsed);
    },
  },
};

function configOrExit(): Config {
  try {
    return loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      // The message lists every problem, one per line, so one run shows everything to fix.
      process.stderr.write(`floodgate: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
}

async function main(argv: readonly string[]): Promise<void> {
  const [name, ...args] = argv;
  if (name === 'help' || name === '--help' || name === '-h') {
    console.log(USAGE);
    return;
  }
  if (name === undefined) throw new UsageError('no command given');
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) throw new UsageError(`unknown command "${name}"`);
  const run = command.parse(args);
  const config = configOrExit();
  await run(config, createLogger(config.logLevel, name));
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof UsageError) {
    process.stderr.write(`floodgate: ${err.message}\n\n${USAGE}\n`);
    process.exit(2);
  }
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  const hint =
    e?.code === 'ECONNREFUSED' ? ` (nothing answers at ${e.address}:${e.port}: start the server, or point DATABASE_URL / REDIS_URL at a running one)` : '';
  process.stderr.write(`floodgate: ${e?.message ?? String(err)}${hint}\n`);
  process.exit(1);
});
