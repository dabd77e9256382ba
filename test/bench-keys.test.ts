import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { deleteKeysUnder } from '../bench/bench-env.js';
import { createRedis } from '../lib/redis.js';
import { deleteByPrefix, TEST_REDIS_URL } from './support.js';

describe("a benchmark's Redis keys", () => {
  const redis = createRedis(TEST_REDIS_URL);
  const base = `test:${randomUUID()}`;
  after(async () => {
    await deleteByPrefix(redis, base);
    redis.disconnect();
  });

  it('are all deleted at the end, idempotency keys included, and nothing outside its prefix', async () => {
    // A run's prefix holds glob characters only by accident; they must match themselves, not widen the match.
    const prefix = `${base}:bench[1]*:`;
    const under = [
      `${prefix}events`,
      `${prefix}events:idem-since`,
      ...Array.from({ length: 2500 }, (_, i) => `${prefix}events:idem:t:${i}`),
    ];
    const outside = [`${base}:bench[1]x:events`, `${base}:bench1:events`, `${base}:other`];
    const pipeline = redis.pipeline();
    for (const key of [...under, ...outside]) pipeline.set(key, '1', 'PX', 600_000);
    await pipeline.exec();
    assert.equal(await deleteKeysUnder(redis, prefix), under.length);
    assert.equal(await redis.exists(...under), 0);
    assert.equal(await redis.exists(...outside), outside.length);
    assert.equal(await deleteKeysUnder(redis, prefix), 0, 'nothing left');
  });
});
