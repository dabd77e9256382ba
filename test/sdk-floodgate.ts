// What the client SDK's tests share: a real Floodgate (API + flush worker over a private database and stream)
// and a look at what it stored, per idempotency key.
import { createApiKey } from '../lib/api-keys.js';
import { createLogger } from '../lib/logger.js';
import type { Priority } from '../lib/event-schema.js';
import { runWorker, type RunningWorker } from '../workers/run.js';
import { countEvents, createTestEnv, eventually, startTestApi, type TestApi, type TestEnv } from './support.js';

/** A running Floodgate for SDK tests. */
export interface SdkFloodgate {
  readonly env: TestEnv;
  readonly api: TestApi;
  /** A fresh key for a tenant of its own, so that each test counts only its rows. */
  key(tenant: string, rateLimit?: { perSecond: number; burst: number }): Promise<string>;
  /** Waits until `n` rows are stored for the tenant (and the stream is drained), then returns rows per key. */
  stored(tenant: string, n: number): Promise<Map<string, { count: number; priority: Priority; occurredAt: Date; receivedAt: Date }>>;
  close(): Promise<void>;
}

/** Starts API (in process, shedding off unless `env` says otherwise) and worker over a fresh test env. */
export async function startSdkFloodgate(env: Record<string, string> = {}): Promise<SdkFloodgate> {
  const testEnv = await createTestEnv({ SHED_MODE: 'off', ...env });
  let api: TestApi | undefined;
  let worker: RunningWorker | undefined;
  try {
    api = await startTestApi(testEnv);
    worker = await runWorker({ ...testEnv.config, workerMetricsPort: 0, flushIntervalMs: 50 }, createLogger('silent', 'sdk-test-worker'));
  } catch (err) {
    await api?.close();
    await testEnv.cleanup();
    throw err;
  }
  return {
    env: testEnv,
    api,
    key: async (tenant, rateLimit) => (await createApiKey(testEnv.pool, { tenant, ...(rateLimit ? { rateLimit } : {}) })).key,
    async stored(tenant, n) {
      await eventually(
        async () => (await countEvents(testEnv, tenant)) >= n && (await testEnv.redis.xlen(testEnv.config.streamKey)) === 0,
        `${n} rows for ${tenant}`,
        30_000,
      );
      const { rows } = await testEnv.pool.query<{ key: string; n: string; priority: Priority; occurred_at: Date; received_at: Date }>(
        `SELECT idempotency_key AS key, count(*) AS n, min(priority) AS priority, min(occurred_at) AS occurred_at, min(received_at) AS received_at
         FROM events WHERE tenant = $1 GROUP BY idempotency_key`,
        [tenant],
      );
      return new Map(
        rows.map((r) => [r.key, { count: Number(r.n), priority: r.priority, occurredAt: r.occurred_at, receivedAt: r.received_at }]),
      );
    },
    async close() {
      await api?.close();
      await worker?.close();
      await testEnv.cleanup();
    },
  };
}
