import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { quoteIdent } from '../lib/db.js';
import { DAY_MS, ensurePartitions, partitionName } from '../lib/partitions.js';
import { createTestEnv, type TestEnv } from './support.js';

describe('partition naming', () => {
  let env: TestEnv;
  before(async () => {
    env = await createTestEnv();
  });
  after(() => env?.cleanup());

  it('partitionName() names each day as the SQL function that creates the partitions does', async () => {
    // Far enough ahead that none of these exists yet, so every one is created and reported.
    const at = Date.now() + 400 * DAY_MS;
    const created = await ensurePartitions(env.pool, { retentionDays: 1, partitionsAheadDays: 2 }, at);
    try {
      // The minute rollups are partitioned by the same days; their partitions are created alongside.
      assert.deepEqual(
        created.filter((name) => name.startsWith('events_')),
        [-2, -1, 0, 1, 2].map((d) => partitionName(at + d * DAY_MS)),
      );
      assert.match(partitionName(Date.UTC(2026, 10, 24, 23, 59, 59)), /^events_p20261124$/);
    } finally {
      for (const name of created) await env.pool.query(`DROP TABLE ${quoteIdent(name)}`);
    }
  });
});
