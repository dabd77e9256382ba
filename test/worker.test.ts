import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../lib/logger.js';
import { DAY_MS as DAY, partitionName } from '../lib/partitions.js';
import { ENTRY_FIELD, encodeEntry } from '../lib/stream-entry.js';
import { createFlusher, type Flusher } from '../workers/flusher.js';
import { createMaintenance } from '../workers/maintenance.js';
import { countEvents, createTestEnv, enqueue, eventually, type TestEnv } from './support.js';

describe('flush worker', () => {
  let env: TestEnv;
  let flusher: Flusher;
  before(async () => {
    env = await createTestEnv({ FLUSH_BATCH_EVENTS: '500', FLUSH_INTERVAL_MS: '20', MAX_DELIVERY_ATTEMPTS: '2' });
    flusher = createFlusher({
      config: env.config,
      pool: env.pool,
      redis: env.redis,
      logger: createLogger('silent', 'test'),
      consumerName: 'test-consumer',
    });
    await flusher.start();
  });
  after(async () => {
    await flusher?.close();
    await env?.cleanup();
  });

  it('stores N events as exactly N rows, batches larger than the flush size included, and empties the stream', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 30; i++) {
      ids.push(
        ...(await enqueue(
          env,
          Array.from({ length: 100 }, (_, j) => ({ type: 'bulk', data: { i, j } })),
          { tenant: 'bulk' },
        )),
      );
    }
    await eventually(async () => (await countEvents(env, 'bulk')) === 3000, '3000 rows');
    const { rows } = await env.pool.query<{ n: string; distinct_ids: string }>(
      "SELECT count(*) AS n, count(DISTINCT id) AS distinct_ids FROM events WHERE tenant = 'bulk'",
    );
    assert.equal(Number(rows[0]!.distinct_ids), 3000);
    const stored = await env.pool.query<{ id: string }>("SELECT id FROM events WHERE tenant = 'bulk'");
    assert.deepEqual(new Set(stored.rows.map((r) => r.id)), new Set(ids));
    await eventually(async () => (await env.redis.xlen(env.config.streamKey)) === 0, 'stream emptied (XDEL after commit)');
  });

  it('stores an idempotency key once: same entry, across entries, across days; per tenant', async () => {
    const now = Date.now();
    await enqueue(
      env,
      [
        { type: 'k', idempotency_key: 'same-entry' },
        { type: 'k', idempotency_key: 'same-entry' },
      ],
      { tenant: 'dedup' },
    );
    await enqueue(env, [{ type: 'k', idempotency_key: 'across-entries' }], { tenant: 'dedup' });
    await enqueue(env, [{ type: 'k', idempotency_key: 'across-entries' }], { tenant: 'dedup' });
    await enqueue(env, [{ type: 'k', idempotency_key: 'across-days', timestamp: new Date(now - 2 * DAY).toISOString() }], {
      tenant: 'dedup',
    });
    await enqueue(env, [{ type: 'k', idempotency_key: 'across-days', timestamp: new Date(now).toISOString() }], { tenant: 'dedup' });
    await enqueue(env, [{ type: 'k', idempotency_key: 'same-entry' }], { tenant: 'other-tenant' });
    await eventually(async () => (await env.redis.xlen(env.config.streamKey)) === 0, 'all written');
    const { rows } = await env.pool.query<{ tenant: string; idempotency_key: string; n: string }>(
      "SELECT tenant, idempotency_key, count(*) AS n FROM events WHERE tenant IN ('dedup', 'other-tenant') GROUP BY 1, 2 ORDER BY 1, 2",
    );
    assert.deepEqual(
      rows.map((r) => [r.tenant, r.idempotency_key, Number(r.n)]),
      [
        ['dedup', 'across-days', 1],
        ['dedup', 'across-entries', 1],
        ['dedup', 'same-entry', 1],
        ['other-tenant', 'same-entry', 1],
      ],
    );
    assert.ok(flusher.stats.duplicatesDropped >= 3);
  });

  it('stores a redelivered entry (same ids) once', async () => {
    const received = Date.now();
    const check = await import('../lib/event-schema.js');
    const events = [{ type: 'redelivered' }, { type: 'redelivered', idempotency_key: 'r1' }].map((e) => {
      const c = check.checkEvent(e, received, env.config);
      assert.ok(c.ok);
      return c.event;
    });
    const payload = encodeEntry('redelivery', 'normal', received, events);
    await env.redis.xadd(env.config.streamKey, '*', ENTRY_FIELD, payload);
    await env.redis.xadd(env.config.streamKey, '*', ENTRY_FIELD, payload);
    await eventually(async () => (await env.redis.xlen(env.config.streamKey)) === 0, 'both written');
    assert.equal(await countEvents(env, 'redelivery'), 2);
  });

  it('round-trips text that COPY must escape', async () => {
    const nasty = 'tab\there\nnewline\r\ncrlf back\\slash \\N "quotes" \'single\' 日本語 😀 \u2028 \\t literal';
    const [id] = await enqueue(
      env,
      [{ type: 'escape.test', source: nasty, idempotency_key: nasty, data: { nasty, [nasty]: [nasty, { nested: nasty }], n: 1.5 } }],
      {
        tenant: 'escape',
      },
    );
    await eventually(async () => (await countEvents(env, 'escape')) === 1, 'escaped row');
    const { rows } = await env.pool.query('SELECT id, source, idempotency_key, data FROM events WHERE tenant = $1', ['escape']);
    assert.equal(rows[0].id, id);
    assert.equal(rows[0].source, nasty);
    assert.equal(rows[0].idempotency_key, nasty);
    assert.deepEqual(rows[0].data, { nasty, [nasty]: [nasty, { nested: nasty }], n: 1.5 });
  });

  it('dead-letters an undecodable entry and a row Postgres refuses, while the rest of the batch lands', async () => {
    const received = Date.now();
    const check = await import('../lib/event-schema.js');
    const good = check.checkEvent({ type: 'fine' }, received, env.config);
    assert.ok(good.ok);
    // Ten years ahead: no partition exists for it, so Postgres refuses the row every time.
    const doomed = { ...good.event, id: '01900000-0000-7000-8000-000000000001', occurredAt: received + 3650 * DAY };
    const before = await env.redis.xlen(env.config.deadLetterStreamKey);
    const tx = env.redis.multi();
    tx.xadd(env.config.streamKey, '*', ENTRY_FIELD, 'this is not json');
    tx.xadd(env.config.streamKey, '*', ENTRY_FIELD, encodeEntry('poison', 'normal', received, [doomed]));
    tx.xadd(env.config.streamKey, '*', ENTRY_FIELD, encodeEntry('poison', 'normal', received, [good.event]));
    await tx.exec();
    await eventually(async () => (await env.redis.xlen(env.config.deadLetterStreamKey)) === before + 2, 'two dead letters');
    await eventually(async () => (await countEvents(env, 'poison')) === 1, 'the good event stored');
    const dead = await env.redis.xrange(env.config.deadLetterStreamKey, '-', '+');
    const reasons = dead.map(([, fields]) => fields[fields.indexOf('reason') + 1]!);
    assert.ok(reasons.some((r) => r.startsWith('undecodable')));
    assert.ok(
      reasons.some((r) => /write failed 2 times: .*partition/.test(r)),
      reasons.join(' | '),
    );
    await eventually(async () => (await env.redis.xlen(env.config.streamKey)) === 0, 'stream emptied');
    const pending = (await env.redis.xpending(env.config.streamKey, env.config.consumerGroup)) as [number];
    assert.equal(pending[0], 0);
  });
});

describe('maintenance', () => {
  let env: TestEnv;
  before(async () => {
    env = await createTestEnv({ RETENTION_DAYS: '3', DEDUP_WINDOW_HOURS: '1' });
  });
  after(() => env?.cleanup());

  it('keeps partitions ahead, drops expired ones and forgets old idempotency keys', async () => {
    await env.pool.query('SELECT floodgate_create_partitions(current_date - 30, current_date - 29)');
    await env.pool.query(
      "INSERT INTO idempotency_keys VALUES ('t', 'old', gen_random_uuid(), now() - interval '2 hours'), ('t', 'new', gen_random_uuid(), now())",
    );
    const maintenance = createMaintenance({ config: env.config, pool: env.pool, logger: createLogger('silent', 'test') });
    const pass = await maintenance.runOnce();
    await maintenance.close();
    assert.equal(pass.dropped.filter((name) => name.startsWith('events_p')).length, 2);
    assert.equal(pass.dropped.filter((name) => name.startsWith('rollup_minute_p')).length, 2, 'their minute rollups go with them');
    assert.equal(pass.keysPruned, 1);
    const { rows } = await env.pool.query<{ relname: string }>(
      "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass ORDER BY 1",
    );
    const days = rows.map((r) => r.relname);
    assert.ok(days.includes(partitionName(Date.now() + DAY)), 'tomorrow exists');
    assert.equal(days.length, 3 + 1 + 1 + env.config.partitionsAheadDays, 'retention + slack + today + ahead');
  });
});
