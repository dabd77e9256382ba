import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { DAY_MS as DAY } from '../lib/partitions.js';
import { createTestEnv, json, startTestApi, type TestApi, type TestEnv } from './support.js';

const iso = (ms: number) => new Date(ms).toISOString();
const deep = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);

/** Sends raw bytes over a socket (for what fetch refuses to send) and returns the status line's code. */
function rawRequest(port: number, head: string, body: Buffer | string = ''): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    socket.setTimeout(10_000, () => socket.destroy(new Error('raw request timed out')));
    socket.on('data', (chunk) => {
      data += chunk.toString('latin1');
      const end = data.indexOf('\r\n\r\n');
      const length = /content-length: (\d+)/i.exec(data);
      if (end >= 0 && length && data.length >= end + 4 + Number(length[1])) {
        socket.destroy();
        resolve({ status: Number(data.slice(9, 12)), text: data.slice(end + 4) });
      }
    });
    socket.on('error', reject);
    socket.write(head);
    socket.write(body);
  });
}

describe('hostile and malformed bodies', () => {
  let env: TestEnv;
  let api: TestApi;
  before(async () => {
    env = await createTestEnv();
    api = await startTestApi(env);
  });
  after(async () => {
    await api?.close();
    await env?.cleanup();
  });

  type Case = [name: string, body: string | Buffer, status: number, code: string, headers?: Record<string, string>];
  const now = Date.now();
  const cases: Case[] = [
    ['truncated JSON', '{"type":"a"', 400, 'malformed_json'],
    ['an empty body', '', 400, 'malformed_json'],
    ['whitespace only', '   \n\t ', 400, 'malformed_json'],
    ['trailing garbage', '{"type":"a"}xyz', 400, 'malformed_json'],
    ['two JSON documents', '{"type":"a"}{"type":"b"}', 400, 'malformed_json'],
    ['single quotes', "{'type':'a'}", 400, 'malformed_json'],
    ['a byte-order mark', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"type":"a"}')]), 400, 'malformed_json'],
    ['invalid UTF-8', Buffer.from([0x7b, 0x22, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]), 400, 'malformed_json'],
    ['an overlong UTF-8 sequence', Buffer.from([0x7b, 0x22, 0x74, 0x22, 0x3a, 0x22, 0xc0, 0xaf, 0x22, 0x7d]), 400, 'malformed_json'],
    ['UTF-16', Buffer.from('\ufeff{"type":"a"}', 'utf16le'), 400, 'malformed_json'],
    ['null', 'null', 400, 'invalid_body'],
    ['a number', '42', 400, 'invalid_body'],
    ['a string', '"event"', 400, 'invalid_body'],
    ['true', 'true', 400, 'invalid_body'],
    ['an array', '[]', 400, 'invalid_body'],
    ['200k-deep nesting', deep(200_000), 400, 'invalid_body'],
    ['events that is not an array', '{"events":{"type":"a"}}', 400, 'invalid_body'],
    ['a batch with another top-level key', '{"events":[{"type":"a"}],"sentAt":1}', 400, 'invalid_body'],
    ['a number as type', '{"type":5}', 422, 'invalid_event'],
    ['an array as type', '{"type":["a"]}', 422, 'invalid_event'],
    ['a 129-character type', JSON.stringify({ type: 'a'.repeat(129) }), 422, 'invalid_event'],
    ['a 900 KB string as type', JSON.stringify({ type: 'a'.repeat(900_000) }), 422, 'invalid_event'],
    ['NUL in type', '{"type":"a\\u0000"}', 422, 'invalid_event'],
    ['data as an array', '{"type":"a","data":[1,2]}', 422, 'invalid_event'],
    ['data as a string', '{"type":"a","data":"x"}', 422, 'invalid_event'],
    ['data over 32 KiB', JSON.stringify({ type: 'a', data: { s: 'x'.repeat(40_000) } }), 422, 'invalid_event'],
    [
      'data with 20k keys',
      JSON.stringify({ type: 'a', data: Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`k${i}`, i])) }),
      422,
      'invalid_event',
    ],
    ['data nested 40 deep', `{"type":"a","data":{"x":${deep(40)}}}`, 422, 'invalid_event'],
    ['data nested 100k deep', `{"type":"a","data":{"x":${deep(100_000)}}}`, 422, 'invalid_event'],
    ['NUL in a data string', '{"type":"a","data":{"s":"x\\u0000y"}}', 422, 'invalid_event'],
    ['NUL in a data key', '{"type":"a","data":{"\\u0000":1}}', 422, 'invalid_event'],
    ['a lone surrogate in data', '{"type":"a","data":{"s":"\\ud800"}}', 422, 'invalid_event'],
    ['a lone surrogate in source', '{"type":"a","source":"\\udc00x"}', 422, 'invalid_event'],
    ['NUL in the idempotency key', '{"type":"a","idempotency_key":"k\\u0000"}', 422, 'invalid_event'],
    ['a 256-character idempotency key', JSON.stringify({ type: 'a', idempotency_key: 'k'.repeat(256) }), 422, 'invalid_event'],
    ['a string value', '{"type":"a","value":"3"}', 422, 'invalid_event'],
    ['an infinite value (1e400)', '{"type":"a","value":1e400}', 422, 'invalid_event'],
    ['a timestamp that is not a date', '{"type":"a","timestamp":"yesterday"}', 422, 'invalid_event'],
    ['a timestamp without a zone', '{"type":"a","timestamp":"2026-01-01T00:00:00"}', 422, 'invalid_event'],
    ['a timestamp 2 days ahead', JSON.stringify({ type: 'a', timestamp: iso(now + 2 * DAY) }), 422, 'invalid_event'],
    ['a timestamp older than retention', JSON.stringify({ type: 'a', timestamp: iso(now - 40 * DAY) }), 422, 'invalid_event'],
    ['a top-level __proto__', '{"type":"a","__proto__":{"polluted":true}}', 422, 'invalid_event'],
    ['top-level constructor and prototype', '{"type":"a","constructor":{"prototype":{"polluted":true}}}', 422, 'invalid_event'],
    ['a batch of non-objects', '{"events":[null,1,"x",[]]}', 422, 'invalid_event'],
    [
      'a batch of 1000 invalid events',
      JSON.stringify({ events: Array.from({ length: 1000 }, () => ({ type: '' })) }),
      422,
      'invalid_event',
    ],
    ['an empty batch', '{"events":[]}', 422, 'empty_batch'],
    ['a 2 MiB body', JSON.stringify({ type: 'a', data: { s: 'x'.repeat(2 * 1024 * 1024) } }), 413, 'payload_too_large'],
    ['a gzip bomb', gzipSync(Buffer.alloc(20 * 1024 * 1024, 0x20)), 413, 'payload_too_large', { 'content-encoding': 'gzip' }],
    [
      'corrupt gzip',
      Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad, 0xbe, 0xef]),
      415,
      'unsupported_encoding',
      { 'content-encoding': 'gzip' },
    ],
    ['gzip announced but plain JSON sent', '{"type":"a"}', 415, 'unsupported_encoding', { 'content-encoding': 'gzip' }],
    ['a text/plain content type', '{"type":"a"}', 415, 'unsupported_media_type', { 'content-type': 'text/plain' }],
    ['an over-long Idempotency-Key header', '{"type":"a"}', 400, 'invalid_header', { 'idempotency-key': 'k'.repeat(300) }],
  ];

  for (const [name, body, status, code, headers] of cases) {
    it(`answers ${status} ${code} to ${name}, and keeps serving`, async () => {
      const res = await api.post(typeof body === 'string' ? body : new Uint8Array(body), headers);
      const answer = await json(res);
      assert.equal(res.status, status, JSON.stringify(answer).slice(0, 300));
      assert.equal(answer.error, code);
      assert.equal(answer.request_id, res.headers.get('x-request-id'));
      const canary = await api.post({ type: 'canary' });
      assert.equal(canary.status, 202);
    });
  }

  it('keeps a __proto__ key inside data as plain data, without polluting objects', async () => {
    const res = await api.post('{"type":"a","data":{"__proto__":{"polluted":true},"ok":1}}');
    assert.equal(res.status, 202);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  it('answers 413 from the Content-Length alone, without waiting for the body', async () => {
    const port = Number(new URL(api.url).port);
    const res = await rawRequest(
      port,
      `POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${api.key}\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n`,
      '{"type":',
    );
    assert.equal(res.status, 413);
    assert.equal(JSON.parse(res.text).error, 'payload_too_large');
  });

  it('answers 413 to a chunked body that grows past the limit', async () => {
    const port = Number(new URL(api.url).port);
    const chunk = 'x'.repeat(256 * 1024);
    const chunked = Array.from({ length: 6 }, () => `${chunk.length.toString(16)}\r\n${chunk}\r\n`).join('') + '0\r\n\r\n';
    const res = await rawRequest(
      port,
      `POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${api.key}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`,
      chunked,
    );
    assert.equal(res.status, 413);
  });

  it('replaces an unsafe X-Request-Id rather than echoing it', async () => {
    const res = await api.post({ type: 'a' }, { 'x-request-id': 'has spaces <script>' });
    assert.equal(res.status, 202);
    assert.notEqual(res.headers.get('x-request-id'), 'has spaces <script>');
  });
});
