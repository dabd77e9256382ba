import { spawn, type ChildProcess } from 'node:child_process';
import type { Config } from '../lib/config.js';
import { ensureServices, stopServices, type LocalService } from './local-services.js';
import type { Logger } from '../lib/logger.js';
import { onShutdown, restartBackoff } from './lifecycle.js';
import { applySchema, isDefaultUrl, sayOnStderr } from './migrate-command.js';
import { localDataDir } from './paths.js';

// Beyond SHUTDOWN_TIMEOUT_MS: the API primary's own margin for its processes, or the worker's last XACKs.
const CHILD_STOP_MARGIN_MS = 5000;

type Role = 'api' | 'worker';

/** One supervised child role: the current process, and whether we are still restarting it. */
interface Supervised {
  readonly role: Role;
  /** Variables this child gets on top of ours (a worker's own metrics port). */
  readonly env: Readonly<Record<string, string>>;
  child: ChildProcess | undefined;
  restartTimer: NodeJS.Timeout | undefined;
  stopping: boolean;
}

/** Worker n's metrics port: WORKER_METRICS_PORT + n, so WORKERS workers do not fight over one port (0 stays off). */
export function workerEnv(config: Pick<Config, 'workerMetricsPort'>, n: number): Record<string, string> {
  return config.workerMetricsPort > 0 ? { WORKER_METRICS_PORT: String(config.workerMetricsPort + n) } : {};
}

/**
 * `floodgate start`: private PostgreSQL/Redis (no Redis with QUEUE=postgres) when the defaults do not answer, migrations, then `floodgate api`
 * and WORKERS × `floodgate worker` as child processes, each restarted with backoff if it dies. On SIGTERM/SIGINT the API
 * stops first (no new events), then the worker (its final flush holds everything accepted), then the private
 * servers.
 */
export async function startCommand(config: Config, logger: Logger): Promise<void> {
  const log = logger.child({ scope: 'supervisor' });
  // Children run exactly what this process runs (bin/floodgate.js, or dist/ through it), with the same node flags.
  const entry = process.argv[1]!;
  const supervised: Supervised[] = [];
  let services: LocalService[] = [];
  let stopping = false;

  const launch = (s: Supervised, backoff: ReturnType<typeof restartBackoff>) => {
    const startedAt = Date.now();
    // Same environment (inherited) and stdio; the IPC channel marks the child as supervised: it leaves Ctrl-C
    // to us and stops if we vanish.
    const child = spawn(process.execPath, [...process.execArgv, entry, s.role], {
      // Passed through unread: the child parses it with lib/config.ts like any floodgate process.
      env: { ...process.env, ...s.env },
      stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    });
    s.child = child;
    let ended = false;
    const onEnd = (code: number | null, signal: NodeJS.Signals | null, err?: Error) => {
      if (ended) return;
      ended = true;
      if (s.stopping) return;
      const delay = backoff.next(Date.now() - startedAt);
      log.error({ role: s.role, pid: child.pid, code, signal, err, restartInMs: delay }, `${s.role} exited unexpectedly; restarting`);
      s.restartTimer = setTimeout(() => !s.stopping && launch(s, backoff), delay);
    };
    child.once('exit', (code, signal) => onEnd(code, signal));
    child.once('error', (err) => onEnd(null, null, err));
  };
  const supervise = (role: Role, env: Record<string, string> = {}) => {
    const s: Supervised = { role, env, child: undefined, restartTimer: undefined, stopping: false };
    supervised.push(s);
    launch(s, restartBackoff());
  };
  /** Resolves true when the child stopped by itself, false when it had to be killed. */
  const stopChild = (s: Supervised) =>
    new Promise<boolean>((resolve) => {
      s.stopping = true;
      clearTimeout(s.restartTimer);
      const child = s.child;
      if (!child || child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return resolve(true);
      let killed = false;
      const deadline = setTimeout(() => {
        killed = true;
        log.error({ role: s.role, pid: child.pid }, `${s.role} did not stop in time; killing it`);
        child.kill('SIGKILL');
      }, config.shutdownTimeoutMs + CHILD_STOP_MARGIN_MS);
      child.once('exit', () => {
        clearTimeout(deadline);
        resolve(!killed);
      });
      child.kill('SIGTERM');
    });

  const startup = (async () => {
    services = await ensureServices(
      {
        postgres: { url: config.databaseUrl, isDefault: isDefaultUrl(config, 'databaseUrl') },
        redis: config.queue === 'redis' ? { url: config.redisUrl, isDefault: isDefaultUrl(config, 'redisUrl') } : undefined,
      },
      { dataDir: localDataDir(), say: sayOnStderr },
    );
    if (stopping) return;
    await applySchema(config, (line) => log.info(line));
    if (stopping) return;
    // WORKERS flush workers join one consumer group; each needs its own metrics port (two cannot listen on one),
    // and one crashing is restarted alone while the others keep reading (and reclaim what it left pending).
    for (let n = 0; n < config.workers; n++) supervise('worker', workerEnv(config, n));
    supervise('api');
    log.info(
      {
        port: config.port,
        apiProcesses: config.apiProcesses,
        workers: config.workers,
        metricsPort: config.metricsPort,
        workerMetricsPort: config.workerMetricsPort,
      },
      'floodgate started',
    );
  })();

  onShutdown(log, {
    async shutdown() {
      stopping = true;
      // A signal during startup: let it finish so we know which servers we started, then undo it.
      await startup.catch(() => {});
      let clean = true;
      for (const role of ['api', 'worker'] as const) {
        // Every worker of a role at once: each flushes its own buffer, none waits for another's.
        const stopped = await Promise.all(supervised.filter((x) => x.role === role).map(stopChild));
        clean = stopped.every(Boolean) && clean;
      }
      await stopServices(services);
      for (const s of [...services].reverse()) sayOnStderr(`stopped the private ${s.name}`);
      if (!clean) throw new Error('a child process had to be killed');
    },
    force() {
      for (const s of supervised) s.child?.kill('SIGKILL');
      if (services.length > 0) sayOnStderr(`left running: ${services.map((s) => s.name).join('; ')} (the next start uses them)`);
    },
  });

  try {
    await startup;
  } catch (err) {
    stopping = true;
    await stopServices(services);
    throw err;
  }
}
