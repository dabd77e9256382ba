import { request, type IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import { WebSocket } from 'ws';

/** One event a live client received: its resume id and the event. */
export interface Received {
  readonly id: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly event: any;
}

/** What a live client has seen so far; arrays grow as the stream goes on. */
export interface LiveClient {
  readonly events: Received[];
  readonly gaps: string[];
  /** The server's close message (SSE `event: close`, WebSocket `{"kind":"close"}`), if any. */
  closeReason: string | undefined;
  /** Resolves when the stream has ended, whoever ended it. */
  readonly ended: Promise<void>;
  /** WebSocket only: the close frame's code and reason. */
  closeCode?: number;
  closeFrameReason?: string;
  /** Waits until `n` events arrived (or fails after `timeoutMs`). */
  waitForEvents(n: number, timeoutMs?: number): Promise<Received[]>;
  /** Stops reading from the socket (a slow consumer), and starts again. */
  pause(): void;
  resume(): void;
  close(): void;
}

async function waitUntil(probe: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function client(base: Pick<LiveClient, 'pause' | 'resume' | 'close'>, ended: Promise<void>): LiveClient {
  const c: LiveClient = {
    events: [],
    gaps: [],
    closeReason: undefined,
    ended,
    async waitForEvents(n, timeoutMs = 20_000) {
      await waitUntil(() => c.events.length >= n, `${n} live events (have ${c.events.length})`, timeoutMs);
      return c.events.slice(0, n);
    },
    ...base,
  };
  return c;
}

/** An SSE answer that was not a stream: status and body. */
export class LiveRefused extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`live stream refused: ${status} ${body}`);
  }
}

/** Opens `GET <path>` as Server-Sent Events; resolves once the 200 headers arrived (the subscription is live). */
export function openSse(
  baseUrl: string,
  key: string | undefined,
  path = '/v1/events/live',
  headers: Record<string, string> = {},
): Promise<LiveClient> {
  return new Promise((resolve, reject) => {
    const req = request(`${baseUrl}${path}`, {
      headers: { accept: 'text/event-stream', ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers },
    });
    req.once('error', reject);
    req.once('response', (res: IncomingMessage) => {
      if (res.statusCode !== 200) {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => reject(new LiveRefused(res.statusCode ?? 0, body)));
        return;
      }
      const ended = new Promise<void>((r) => res.once('close', () => r()));
      const c = client({ pause: () => res.socket.pause(), resume: () => res.socket.resume(), close: () => req.destroy() }, ended);
      res.setEncoding('utf8');
      let buffer = '';
      res.on('data', (chunk: string) => {
        buffer += chunk;
        for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let id = '';
          let name = 'message';
          let data = '';
          for (const line of frame.split('\n')) {
            if (line.startsWith('id: ')) id = line.slice(4);
            else if (line.startsWith('event: ')) name = line.slice(7);
            else if (line.startsWith('data: ')) data += line.slice(6);
          }
          if (name === 'message' && data) c.events.push({ id, event: JSON.parse(data) });
          else if (name === 'gap') c.gaps.push(JSON.parse(data).message);
          else if (name === 'close') c.closeReason = JSON.parse(data).reason;
        }
      });
      res.on('error', () => {});
      resolve(c);
    });
    req.end();
  });
}

/** An HTTP answer to a WebSocket handshake that was refused. */
export class WsRefused extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`websocket refused: ${status} ${body}`);
  }
}

/** Opens the live view as a WebSocket; resolves once it is open (the subscription is live). */
export function openWs(baseUrl: string, key: string | undefined, query = ''): Promise<LiveClient> {
  const url = `${baseUrl.replace(/^http/, 'ws')}/v1/events/live${query}`;
  let socket: Socket | undefined;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      headers: key ? { authorization: `Bearer ${key}` } : {},
      // Our own socket, so that a test can stop reading from it like a slow client.
      createConnection: ((options: { host: string; port: number }) =>
        (socket = connect({ host: options.host, port: Number(options.port) }))) as unknown as typeof connect,
    });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => reject(new WsRefused(res.statusCode ?? 0, body)));
    });
    ws.once('error', reject);
    ws.once('open', () => {
      const ended = new Promise<void>((r) => ws.once('close', () => r()));
      const c = client({ pause: () => socket!.pause(), resume: () => socket!.resume(), close: () => ws.terminate() }, ended);
      ws.on('error', () => {});
      ws.on('message', (data) => {
        const message = JSON.parse((data as Buffer).toString('utf8'));
        if (message.kind === 'events') for (const e of message.events) c.events.push({ id: e.id, event: e.event });
        else if (message.kind === 'gap') c.gaps.push(message.message);
        else if (message.kind === 'close') c.closeReason = message.reason;
      });
      ws.once('close', (code, reason) => {
        c.closeCode = code;
        c.closeFrameReason = reason.toString();
      });
      resolve(c);
    });
  });
}
