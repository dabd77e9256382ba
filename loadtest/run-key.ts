// What identifies a load test run: its id (in every event's `data.run`) and the API key it sends with — the one
// given, or one created for the run and revoked when it ends.
import { randomBytes } from 'node:crypto';
import { createApiKey, revokeApiKey } from '../lib/api-keys.js';
import type { Pool } from '../lib/db.js';

/** A run id: in every event's `data.run`, so the integrity check finds exactly this run's rows. */
export function newRunId(): string {
  return `lt${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
}

/** The key to send with, and the prefix of the key created for the run (null when one was given). */
export async function keyForRun(
  pool: Pool | null,
  given: string | undefined,
  tenant: string,
): Promise<{ key: string; created: string | null }> {
  if (given) return { key: given, created: null };
  if (!pool) throw new Error('give --key, or --database-url so that a key can be created for the run');
  const { key, prefix } = await createApiKey(pool, { tenant });
  return { key, created: prefix };
}

/** Revokes the key created for the run (if any) and closes the run's pool. */
export async function endRun(pool: Pool | null, created: string | null): Promise<void> {
  if (!pool) return;
  if (created) await revokeApiKey(pool, created).catch(() => {});
  await pool.end();
}
