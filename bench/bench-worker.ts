// The worker's durable rate against its ceiling: the same rows through `psql \copy` into a staging table plus
// `INSERT … ON CONFLICT DO NOTHING`, in one transaction.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Config } from '../lib/config.js';
import type { Pool } from '../lib/db.js';
import { checkEvent, type ValidEvent } from '../lib/event-schema.js';
import type { Redis } from '../lib/redis.js';
import { COPY_COLUMNS } from '../lib/copy-text.js';
import { CREATE_STAGING, MERGE_STAGING, STAGING } from '../lib/pg-batch-write.js';
import { ENTRY_FIELD, decodeEntry, encodeEntry } from '../lib/stream-entry.js';
import { FLOODGATE_BIN, startNode } from './processes.js';
import { generateEvent, seededRandom } from '../loadtest/events.js';

const run = promisify(execFile);
const EVENTS_PER_ENTRY = 100;

export interface WorkerFigures {
  events: number;
  workerEventsPerSec: number;
  psqlEventsPerSec: number;
}

async function countRows(pool: Pool): Promise<number> {
  const { rows } = await pool.query<{ n: string }>('SELECT count(*) AS n FROM events');
  return Number(rows[0]!.n);
}

/** Preloads `events` events on the stream, times a worker draining them into Postgres, then times psql on the same rows. */
export async function measureWorker(options: {
  pool: Pool;
  redis: Redis;
  config: Config;
  env: Record<string, string>;
  databaseUrl: string;
  events: number;
}): Promise<WorkerFigures> {
  const { pool, redis, config, env, databaseUrl } = options;
  const random = seededRandom(3);
  const receivedAt = Date.now();
  const limits = { retentionDays: config.retentionDays, maxEventDataBytes: config.maxEventDataBytes };
  const all: ValidEvent[] = [];
  for (let i = 0; i < options.events; i++) {
    const check = checkEvent(generateEvent(random, i), receivedAt, limits);
    if (!check.ok) throw new Error(`generated an invalid event: ${JSON.stringify(check.errors)}`);
    all.push(check.event);
  }

  await pool.query('TRUNCATE events, idempotency_keys');
  await redis.del(config.streamKey);
  await redis.xgroup('CREATE', config.streamKey, config.consumerGroup, '0', 'MKSTREAM');
  const payloads: string[] = [];
  for (let j = 0; j < all.length; j += EVENTS_PER_ENTRY)
    payloads.push(encodeEntry('bench', 'normal', receivedAt, all.slice(j, j + EVENTS_PER_ENTRY)));
  for (let i = 0; i < payloads.length; i += 100) {
    const pipeline = redis.pipeline();
    for (const payload of payloads.slice(i, i + 100)) pipeline.xadd(config.streamKey, '*', ENTRY_FIELD, payload);
    await pipeline.exec();
  }

  // Timed from the moment the first 5 % are durable, so the worker's start-up (tsx, connections) is not counted.
  const worker = startNode([FLOODGATE_BIN, 'worker'], env);
  let t0 = 0;
  let n0 = 0;
  let workerSeconds: number;
  try {
    const deadline = Date.now() + 300_000;
    for (;;) {
      const n = await countRows(pool);
      if (t0 === 0 && n >= all.length * 0.05) {
        t0 = performance.now();
        n0 = n;
      }
      if (n >= all.length) {
        workerSeconds = (performance.now() - t0) / 1000;
        break;
      }
      if (Date.now() > deadline) throw new Error(`worker stored only ${n} of ${all.length} events in 5 minutes`);
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    await worker.stop();
  }
  const workerEventsPerSec = (all.length - n0) / workerSeconds;
  console.log(`${'worker, durable in postgres'.padEnd(34)} ${workerEventsPerSec.toFixed(0).padStart(25)} events/s`);

  await pool.query('TRUNCATE events, idempotency_keys');
  const dir = await mkdtemp(join(tmpdir(), 'floodgate-bench-'));
  try {
    // The same rows, staging table and merge statement as the worker: only the worker's machinery differs.
    await writeFile(join(dir, 'rows.tsv'), payloads.map((p) => decodeEntry(p).rows).join(''));
    await writeFile(
      join(dir, 'load.sql'),
      [
        'BEGIN;',
        `${CREATE_STAGING};`,
        `\\copy ${STAGING} (${COPY_COLUMNS.join(', ')}) FROM '${join(dir, 'rows.tsv')}'`,
        `${MERGE_STAGING};`,
        'COMMIT;',
      ].join('\n'),
    );
    const started = performance.now();
    await run('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', databaseUrl, '-f', join(dir, 'load.sql')]);
    const psqlSeconds = (performance.now() - started) / 1000;
    const stored = await countRows(pool);
    if (stored !== all.length) throw new Error(`psql stored ${stored} of ${all.length} rows`);
    const psqlEventsPerSec = all.length / psqlSeconds;
    console.log(`${'psql \\copy + INSERT … ON CONFLICT'.padEnd(34)} ${psqlEventsPerSec.toFixed(0).padStart(25)} events/s`);
    return { events: all.length, workerEventsPerSec, psqlEventsPerSec };
  } finally {
    await rm(dir, { recursive: true, force: true });
    await pool.query('TRUNCATE events, idempotency_keys');
  }
}
