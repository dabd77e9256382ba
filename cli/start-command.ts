import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CONFIG_VARIABLES, type Config } from '../lib/config.js';
import { ensureServices } from '../lib/local-services.js';
import type { Logger } from '../lib/logger.js';
import { exitOnSignal, restartBackoff } from './lifecycle.js';
import { migrateCommand } from './migrate-command.js';

const BIN = fileURLToPath(new URL('../bin/floodgate.js', import.meta.url));
const DATA_DIR = fileURLToPath(new URL('../.data', import.meta.url));

interface Supervised {
  readonly role: string;
  child: ChildProcess | undefined;
  stopping: boolean;
}

/** `floodgate start`: local services if needed, migrations, then the API and one worker, restarted if they crash. */
export async function startCommand(config: Config, logger: Logger): Promise<void> {
  const log = logger.child({ scope: 'supervisor' });
  const services = await ensureServices({
    databaseUrl: config.databaseUrl,
    redisUrl: config.redisUrl,
    databaseUrlIsDefault: config.databaseUrl === CONFIG_VARIABLES.databaseUrl.defaultValue,
    redisUrlIsDefault: config.redisUrl === CONFIG_VARIABLES.redisUrl.defaultValue,
    dataDir: DATA_DIR,
    say: (line) => process.stderr.write(`floodgate: ${line}\n`),
  });
  await migrateCommand(config, (line) => log.info(line));

  const supervise = (role: string): Supervised => {
    const s: Supervised = { role, child: undefined, stopping: false };
    const backoff = restartBackoff();
    const launch = () => {
      const startedAt = Date.now();
      const child = spawn(process.execPath, [BIN, role], { stdio: 'inherit', env: process.env });
      s.child = child;
      child.once('exit', (code, signal) => {
        if (s.stopping) return;
        const delay = backoff.next(Date.now() - startedAt);
        log.error({ role, code, signal, restartInMs: delay }, 'child exited; restarting');
        setTimeout(() => !s.stopping && launch(), delay);
      });
    };
    launch();
    return s;
  };
  const stop = (s: Supervised) =>
    new Promise<void>((resolve) => {
      s.stopping = true;
      const child = s.child;
      if (!child || child.exitCode !== null || child.signalCode !== null) return resolve();
      const kill = setTimeout(() => child.kill('SIGKILL'), config.shutdownTimeoutMs + 5000);
      child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      child.kill('SIGTERM');
    });

  const worker = supervise('worker');
  const api = supervise('api');
  log.info({ port: config.port, metricsPort: config.metricsPort, workerMetricsPort: config.workerMetricsPort }, 'floodgate started');

  // Order matters: stop taking requests first, then let the worker flush what is queued, then the servers.
  exitOnSignal(log, async () => {
    await stop(api);
    await stop(worker);
    for (const s of services) await s.stop();
  });
}
