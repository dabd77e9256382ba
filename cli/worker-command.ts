import type { Config } from '../lib/config.js';
import type { Logger } from '../lib/logger.js';
import { runWorker } from '../workers/run.js';
import { onShutdown } from './lifecycle.js';

/** `floodgate worker`: one flush worker until SIGTERM/SIGINT, then a final flush and acknowledgement. */
export async function workerCommand(config: Config, logger: Logger): Promise<void> {
  const worker = await runWorker(config, logger);
  onShutdown(logger, { shutdown: () => worker.close() });
}
