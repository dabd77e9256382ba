import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import Koa from 'koa';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { createShedder, type Shedder } from '../app/shedding/shedder.js';
import type { IngestState } from '../app/state.js';
import type { KeyGrant } from '../lib/api-keys.js';
import { loadConfig } from '../lib/config.js';
import { isPriority } from '../lib/event-schema.js';
import { createLatencyWindow } from '../lib/latency-window.js';
import { eventually } from './support.js';

/** Sends a POST as one write (headers and body in the same segment, as most clients send a small request) and resolves with its status line. */
function rawPost(port: number, priority: string, body: string, split = false): { answered: Promise<string>; rest(): void } {
  const socket = connect(port, '127.0.0.1');
  const head = `POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Priority: ${priority}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n`;
  const half = Math.floor(body.length / 2);
  socket.write(split ? head + body.slice(0, half) : head + body);
  let answer = '';
  socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
  const answered = new Promise<string>((resolve, reject) => {
    socket.once('error', reject);
    socket.once('close', () => resolve(answer.split('\r\n')[0] ?? ''));
  });
  return { answered, rest: () => socket.write(body.slice(half)) };
}

describe('the in-flight limit on a real listening server', () => {
  let shedder: Shedder;
  let server: Server;
  let port: number;
  const held: (() => void)[] = [];
  /** The classes of the requests the route has begun to read (before their bodies are in). */
  const entered: string[] = [];
  before(async () => {
    // One slot, and waits that never time out: what waits is seen waiting, whatever the machine's speed.
    const config = loadConfig({
      STREAM_KEY: `test:${randomUUID()}:events`,
      SHED_MODE: 'enforce',
      SHED_NONCRITICAL_MAX_IN_FLIGHT: '1',
      SHED_QUEUE_TIMEOUT_MS: '600000',
    });
    shedder = createShedder({ config, latency: createLatencyWindow(60), registry: new Registry(), logger: pino({ level: 'silent' }) });
    const app = new Koa<IngestState>();
    app.use(async (ctx, next) => {
      const priority = ctx.get('x-priority');
      assert.ok(isPriority(priority));
      ctx.state.grant = { tenant: 'acme' } as KeyGrant;
      ctx.state.priority = priority;
      await next();
    });
    app.use(shedder.middleware());
    // The route: reads the body; a body of "hold" keeps its request (and its slot) until the test lets it go.
    app.use(async (ctx) => {
      entered.push(ctx.get('x-priority'));
      let body = '';
      for await (const chunk of ctx.req) body += String(chunk);
      if (body === 'hold') await new Promise<void>((resolve) => held.push(resolve));
      ctx.body = 'ok';
    });
    const handle = app.callback();
    server = createServer((req, res) => void handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    for (const release of held) release();
    await shedder?.close();
    await new Promise((resolve) => server?.close(resolve));
  });

  it('makes a request whose body came with its headers wait for a slot, and neither critical nor a slow upload', async () => {
    const first = rawPost(port, 'low', 'hold');
    await eventually(async () => shedder.snapshot().workLimit.inFlight === 1, 'the first low request to hold the one slot');

    const second = rawPost(port, 'low', 'second');
    await eventually(async () => shedder.snapshot().workLimit.queued.low === 1, 'the second low request to wait for the slot');
    assert.equal(shedder.snapshot().workLimit.inFlight, 1, 'the waiting request is not in flight');

    // Critical never waits for the limit.
    assert.match(await rawPost(port, 'critical', 'critical').answered, / 200 /);
    // A body still arriving when the request is decided does not hold the queue: it goes on and counts once read.
    const upload = rawPost(port, 'normal', 'slow upload', true);
    await eventually(async () => entered.includes('normal'), 'the slow upload to be admitted before its body is in');
    upload.rest();
    assert.match(await upload.answered, / 200 /, 'answered while the slot is still held');
    assert.equal(shedder.snapshot().workLimit.queued.low, 1, 'the second low request is still waiting');

    held.shift()!();
    assert.match(await first.answered, / 200 /);
    assert.match(await second.answered, / 200 /, 'granted the slot once it was given back');
    assert.deepEqual(shedder.snapshot().workLimit.queued, { normal: 0, low: 0 });
  });
});
