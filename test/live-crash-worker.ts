/**
 * A flush worker that kills itself (SIGKILL) at a chosen point of its first committed batch, for the live view's
 * crash tests. It is the worker's flusher and live publisher wired as `floodgate worker` wires them, with the
 * commit hook wrapped by the fault:
 *
 * - `after-commit`: the batch is committed, nothing is published or acknowledged;
 * - `after-publish`: the batch is committed and published, not acknowledged.
 *
 * Usage: node --import tsx test/live-crash-worker.ts <fault> (configuration from the environment, as `floodgate`).
 */
import { Registry } from 'prom-client';
import { loadConfig } from '../lib/config.js';
import { createPool } from '../lib/db.js';
import { createLivePublisher, liveDedupWindowMs } from '../lib/live-publisher.js';
import { createLogger } from '../lib/logger.js';
import { createQueueRedis } from '../lib/redis.js';
import type { QueuedEntry } from '../lib/stream-entry.js';
import type { WriteResult } from '../lib/pg-batch-write.js';
import { createFlusher } from '../workers/flusher.js';

const fault = process.argv[2];
if (fault !== 'after-commit' && fault !== 'after-publish') {
  process.stderr.write('usage: live-crash-worker.ts after-commit|after-publish\n');
  process.exit(2);
}
const config = loadConfig(process.env);
const logger = createLogger('warn', 'worker');
const pool = createPool(config.databaseUrl, { max: 2, applicationName: 'floodgate-worker' });
const redis = createQueueRedis(config);
const publisher = createLivePublisher({
  redis,
  pool,
  streamKey: config.streamKey,
  resumeWindowMs: config.liveResumeWindowMs,
  dedupWindowMs: liveDedupWindowMs(config),
  logger,
  registry: new Registry(),
});

const die = (): Promise<never> => {
  process.kill(process.pid, 'SIGKILL');
  return new Promise<never>(() => {});
};

async function onCommitted(entries: readonly QueuedEntry[], result: WriteResult): Promise<void> {
  if (fault === 'after-publish') await publisher.onCommitted(entries, result);
  await die();
}

const flusher = createFlusher({ config, pool, redis, logger, consumerName: `doomed-${process.pid}`, onCommitted });
await flusher.start();
