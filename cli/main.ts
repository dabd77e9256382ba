import { ConfigError, loadConfig, type Config } from '../lib/config.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { apiCommand } from './api-command.js';
import { keysCommand, parseKeysArgs } from './keys-command.js';
import { loadtestCommand, parseLoadtestArgs } from './loadtest-command.js';
import { migrateCommand } from './migrate-command.js';
import { startCommand } from './start-command.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from './paths.js';
import { parseTenantsArgs, tenantsCommand } from './tenants-command.js';
import { commandUsage, helpTopic, noArguments, USAGE, UsageError, type HelpTopic } from './usage.js';
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

// Keyed by help topic: a command without an entry in COMMAND_HELP (cli/usage.ts) does not compile.
const COMMANDS: Partial<Record<HelpTopic, Command>> = {
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

const HELP_FLAGS = new Set(['--help', '-h']);

/** The version in package.json (the checkout's or the installed package's). */
function version(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

/** The help a command line asks for, if it asks: `help [command]`, `--help`, or `<command> … --help`. */
function requestedHelp(argv: readonly string[]): string | undefined {
  const [name, ...args] = argv;
  if (name === 'help') {
    if (args.length === 0) return USAGE;
    const topic = helpTopic(args);
    if (!topic) throw new UsageError(`no help for "${args.join(' ')}"`);
    return commandUsage(topic);
  }
  if (name === undefined || HELP_FLAGS.has(name)) return name === undefined ? undefined : USAGE;
  if (!args.some((a) => HELP_FLAGS.has(a))) return undefined;
  const topic = helpTopic(argv);
  return topic ? commandUsage(topic) : undefined;
}

async function main(argv: readonly string[]): Promise<void> {
  const [name, ...args] = argv;
  if (name === '--version' || name === '-v') {
    console.log(version());
    return;
  }
  const help = requestedHelp(argv);
  if (help !== undefined) {
    console.log(help);
    return;
  }
  if (name === undefined) throw new UsageError('no command given');
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name as HelpTopic] : undefined;
  if (!command) throw new UsageError(`unknown command "${name}"`);
  const run = command.parse(args);
  const config = configOrExit();
  await run(config, createLogger(config.logLevel, name));
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof UsageError) {
    // The usage of the command that was mistyped, or the overview when the command itself is unknown.
    const topic = helpTopic(process.argv.slice(2));
    process.stderr.write(`floodgate: ${err.message}\n\n${topic ? commandUsage(topic) : USAGE}\n`);
    process.exit(2);
  }
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  const hint =
    e?.code === 'ECONNREFUSED'
      ? ` (nothing answers at ${e.address}:${e.port}: start the server, or point DATABASE_URL / REDIS_URL at a running one)`
      : '';
  process.stderr.write(`floodgate: ${e?.message ?? String(err)}${hint}\n`);
  process.exit(1);
});
