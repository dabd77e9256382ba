import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import { runApi } from '../app/run.js';
import type { Config } from '../lib/config.js';
import type { Logger } from '../lib/logger.js';
import { startMetricsServer } from '../lib/metrics-server.js';
import { exitOnSignal, restartBackoff } from './lifecycle.js';

/** `floodgate api`: API_PROCESSES server processes under node:cluster, one aggregated /metrics endpoint. */
export async function apiCommand(config: Config, logger: Logger): Promise<void> {
  if (cluster.isWorker) return runClusterWorker(config, logger);
  if (config.apiProcesses === 1) return runSingleProcess(config, logger);
  return runPrimary(config, logger);
}

async function runSingleProcess(config: Config, logger: Logger): Promise<void> {
  const api = await runApi(config, logger);
  const metrics =
    config.metricsPort > 0
      ? await startMetricsServer(config.metricsPort, config.host, async () => ({ contentType: api.registry.contentType, body: await api.registry.metrics() }))
      : undefined;
  exitOnSignal(logger, async () => {
    await metrics?.close();
    await api.close();
  });
}

async function runClusterWorker(config: Config, logger: Logger): Promise<void> {
  const api = await runApi(config, logger);
  // Answer the primary's metric requests from this process's registry (not prom-client's global one).
  AggregatorRegistry.setRegistries([api.registry]);
  new AggregatorRegistry();
  // Ctrl-C reaches every process of the group; the primary also forwards SIGTERM. Either way: drain, then exit.
  exitOnSignal(logger, () => api.close());
}

async function runPrimary(config: Config, logger: Logger): Promise<void> {
  const log = logger.child({ scope: 'cluster-primary' });
  const aggregator = new AggregatorRegistry();
  let stopping = false;
  const backoff = restartBackoff();
  const startedAt = new Map<Worker, number>();

  const fork = () => {
    const worker = cluster.fork();
    startedAt.set(worker, Date.now());
    worker.on('exit', (code, signal) => {
      const uptime = Date.now() - (startedAt.get(worker) ?? Date.now());
      startedAt.delete(worker);
      if (stopping) return;
      const delay = backoff.next(uptime);
      log.error({ pid: worker.process.pid, code, signal, restartInMs: delay }, 'api process died; restarting');
      setTimeout(() => !stopping && fork(), delay);
    });
  };
  for (let i = 0; i < config.apiProcesses; i++) fork();

  const metrics =
    config.metricsPort > 0
      ? await startMetricsServer(config.metricsPort, config.host, async () => ({ contentType: aggregator.contentType, body: await aggregator.clusterMetrics() }))
      : undefined;
  log.info({ processes: config.apiProcesses, metricsPort: metrics?.port }, 'api cluster started');

  exitOnSignal(log, async () => {
    stopping = true;
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
    const exited = workers.map((w) => new Promise<void>((resolve) => (w.isDead() ? resolve() : w.once('exit', () => resolve()))));
    for (const w of workers) w.process.kill('SIGTERM');
    const timeout = setTimeout(() => {
      log.error('api processes did not stop in time; killing them');
      for (const w of workers) w.process.kill('SIGKILL');
    }, config.shutdownTimeoutMs + 2000);
    await Promise.all(exited);
    clearTimeout(timeout);
    await metrics?.close();
  });
}
