import { ConfigError, loadConfig, type Config } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { apiCommand } from './api-command.js';
import { keysCommand } from './keys-command.js';
import { migrateCommand } from './migrate-command.js';
import { startCommand } from './start-command.js';
import { USAGE, UsageError } from './usage.js';
import { workerCommand } from './worker-command.js';

function configOrExit(): Config {
  try {
    return loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`floodgate: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
}

async function main(argv: string[]): Promise<void> {
  const [command, ...args] = argv;
  if (!command || command === 'help' || command === '--help' || command === '-h') {
    console.log(USAGE);
    return;
  }
  const known = ['start', 'api', 'worker', 'migrate', 'keys'];
  if (!known.includes(command)) throw new UsageError(`unknown command "${command}"`);
  const config = configOrExit();
  const logger = createLogger(config.logLevel, command);
  switch (command) {
    case 'start':
      return startCommand(config, logger);
    case 'api':
      return apiCommand(config, logger);
    case 'worker':
      return workerCommand(config, logger);
    case 'migrate':
      return migrateCommand(config);
    case 'keys':
      return keysCommand(config, args);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof UsageError) {
    process.stderr.write(`floodgate: ${err.message}\n\n${USAGE}\n`);
    process.exit(2);
  }
  process.stderr.write(`floodgate: ${(err as Error)?.message ?? String(err)}\n`);
  process.exit(1);
});
