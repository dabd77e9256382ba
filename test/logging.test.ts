import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { createApiKey } from '../lib/api-keys.js';
import { createLogger, REDACTED } from '../lib/logger.js';
import { createTestEnv, startPrivateRedis, type PrivateRedis, type TestEnv } from './support.js';

/** A destination that keeps every log line, parsed, as a user reading the JSON output would see it. */
function captureLog() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return {
    stream,
    text: () => lines.join('\n'),
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    records: (): any[] => lines.map((l) => JSON.parse(l)),
  };
}

describe('log output', () => {
  it('redacts Authorization and X-Api-Key of a logged request, keeping the other headers', async () => {
    const log = captureLog();
    const logger = createLogger('info', 'test', log.stream);
    const server = createServer((req: IncomingMessage, res) => {
      logger.warn({ req }, 'request');
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const res = await fetch(`http://127.0.0.1:${port}/v1/events`, {
        headers: { authorization: 'Bearer fg_live_secret-token', 'X-Api-Key': 'fg_live_other-secret', 'x-request-id': 'req-1' },
      });
      await res.arrayBuffer();
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    logger.info({ headers: { Authorization: 'Bearer hand-built', 'x-api-key': 'k' } }, 'outgoing');
    assert.doesNotMatch(log.text(), /secret|hand-built|"k"/);
    const [request, outgoing] = log.records();
    assert.equal(request.req.headers.authorization, REDACTED);
    assert.equal(request.req.headers['x-api-key'], REDACTED);
    assert.equal(request.req.headers['x-request-id'], 'req-1', 'other headers stay');
    assert.equal(request.req.url, '/v1/events');
    assert.deepEqual(outgoing.headers, { Authorization: REDACTED, 'x-api-key': REDACTED });
  });

  it('serialises errors with their cause chain under err, cause and errors, never as {}', () => {
    const log = captureLog();
    const logger = createLogger('info', 'test', log.stream);
    const pgError = Object.assign(new Error('relation "events" does not exist'), { code: '42P01' });
    logger.error(
      {
        err: new Error('batch write failed', { cause: pgError }),
        cause: new Error('redis timed out'),
        errors: [new Error('a'), new Error('b')],
      },
      'x',
    );
    const [record] = log.records();
    assert.equal(record.err.message, 'batch write failed');
    assert.equal(record.err.cause.message, 'relation "events" does not exist');
    assert.equal(record.err.cause.code, '42P01');
    assert.match(record.err.stack, /batch write failed/);
    assert.equal(record.cause.message, 'redis timed out');
    assert.deepEqual(
      record.errors.map((e: { message: string }) => e.message),
      ['a', 'b'],
    );
  });
});

describe('log output of the API when a critical request can be stored neither in Redis nor in Postgres', () => {
  let redis: PrivateRedis;
  let env: TestEnv;
  let close: (() => Promise<void>) | undefined;
  const log = captureLog();
  let url: string;
  let key: string;

  before(async () => {
    redis = await startPrivateRedis();
    env = await createTestEnv({ REDIS_URL: redis.url, SHED_MODE: 'off', REDIS_WRITE_TIMEOUT_MS: '300', LOG_LEVEL: 'info' });
    const { runApi } = await import('../app/run.js');
    const api = await runApi(env.config, createLogger('info', 'api', log.stream));
    close = () => api.close();
    url = `http://127.0.0.1:${api.port}`;
    ({ key } = await createApiKey(env.pool, { tenant: 'acme-logs' }));
  });

  after(async () => {
    await close?.();
    await env?.cleanup();
    await redis?.stop();
  });

  it('logs one error line with the tenant, the request id, the Postgres error and the Redis cause, and no credential', async () => {
    await redis.stop();
    // Postgres answers (the key is verified) but the write fails: the events table is gone.
    await env.pool.query('ALTER TABLE events RENAME TO events_elsewhere');
    const res = await fetch(`${url}/v1/events`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${key}`,
        'x-priority': 'critical',
        'x-request-id': 'log-test-1',
      },
      body: JSON.stringify({ type: 'order.paid' }),
    });
    assert.equal(res.status, 503);
    await res.arrayBuffer();
    assert.ok(!log.text().includes(key), 'the API key appears nowhere in the log');
    const errorLines = log.records().filter((r) => r.level === 50);
    assert.equal(errorLines.length, 1, log.text());
    const [line] = errorLines;
    assert.equal(line.msg, 'critical events could not be written to Redis nor to Postgres');
    assert.equal(line.tenant, 'acme-logs');
    assert.equal(line.reqId, 'log-test-1');
    assert.equal(line.err.code, '42P01', 'the Postgres error, with its SQLSTATE');
    assert.equal(typeof line.cause.message, 'string', `the Redis failure is described, not {}: ${JSON.stringify(line.cause)}`);
    assert.ok(line.cause.message.length > 0);
  });
});
