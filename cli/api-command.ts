import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import { runApi } from '../app/run.js';
import type { Config } from '../lib/config.js';
import type { Logger } from '../lib/logger.js';
import { startMetricsServer } from '../lib/metrics-server.js';
import { onShutdown, restartBackoff } from './lifecycle.js';

// Beyond SHUTDOWN_TIMEOUT_MS (the in-flight grace inside each process): time to close Redis and Postgres.
const CLOSE_MARGIN_MS = 2000;

/** `floodgate api`: API_PROCESSES server processes under node:cluster, one aggregated /metrics endpoint. */
export async function apiCommand(config: Config, logger: Logger): Promise<void> {
  if (cluster.isWorker) return runClusterWorker(config, logger);
  if (config.apiProcesses === 1) return runSingleProcess(config, logger);
  return runPrimary(config, logger);
}

async function runSingleProcess(config: Config, logger: Logger): Promise<void> {
  const api = await runApi(config, logger);
  const metrics =
    config.metricsEnabled && config.metricsPort > 0
      ? await startMetricsServer(config.metricsPort, config, async () => ({
          contentType: api.registry.contentType,
          body: await api.registry.metrics(),
        }))
      : undefined;
  onShutdown(logger, {
    async shutdown() {
      await api.close();
      await metrics?.close();
    },
  });
}

async function runClusterWorker(config: Config, logger: Logger): Promise<void> {
  const api = await runApi(config, logger);
  // Answer the primary's metric requests from this process's registry (not prom-client's global one).
  AggregatorRegistry.setRegistries([api.registry]);
  new AggregatorRegistry();
  onShutdown(logger, { shutdown: () => api.close() });
}

async function runPrimary(config: Config, logger: Logger): Promise<void> {
  const log = logger.child({ scope: 'cluster-primary' });
  const aggregator = new AggregatorRegistry();
  let stopping = false;
  const backoff = restartBackoff();
  const live = new Set<Worker>();

  const fork = () => {
    const worker = cluster.fork();
    const startedAt = Date.now();
    live.add(worker);
    worker.once('exit', (code, signal) => {
      live.delete(worker);
      if (stopping) return;
      const delay = backoff.next(Date.now() - startedAt);
      log.error({ pid: worker.process.pid, code, signal, restartInMs: delay }, 'api process died; restarting');
      setTimeout(() => !stopping && fork(), delay);
    });
  };
  for (let i = 0; i < config.apiProcesses; i++) fork();

  const metrics =
    config.metricsEnabled && config.metricsPort > 0
      ? await startMetricsServer(config.metricsPort, config, async () => ({
          contentType: aggregator.contentType,
          body: await aggregator.clusterMetrics(),
        }))
      : undefined;
  log.info({ processes: config.apiProcesses, port: config.port, metricsPort: metrics?.port }, 'api cluster started');

  const killAll = () => {
    for (const w of live) w.process.kill('SIGKILL');
  };
  onShutdown(log, {
    async shutdown() {
      stopping = true;
      const workers = [...live];
      const exited = workers.map((w) => new Promise<void>((resolve) => (w.isDead() ? resolve() : w.once('exit', () => resolve()))));
      // Each process stops accepting, finishes its in-flight requests, then closes Redis and Postgres.
      for (const w of workers) w.process.kill('SIGTERM');
      let killed = false;
      const deadline = setTimeout(() => {
        killed = true;
        log.error({ pids: workers.map((w) => w.process.pid) }, 'api processes did not stop within SHUTDOWN_TIMEOUT_MS; killing them');
        killAll();
      }, config.shutdownTimeoutMs + CLOSE_MARGIN_MS);
      await Promise.all(exited);
      clearTimeout(deadline);
      await metrics?.close();
      if (killed) throw new Error('api processes had to be killed');
    },
    force: killAll,
  });
}
