// A client that uploads its request body slowly, over a raw socket (fetch and autocannon send a body at once):
// what a client on a poor link, or one holding sockets on purpose, looks like to the server.
import { connect, type Socket } from 'node:net';

/** One slow upload: the body is sent in `pieces` writes spread over `uploadMs` after the headers. */
export interface SlowUploadOptions {
  /** http://host:port of the API. */
  readonly url: string;
  readonly key: string;
  readonly body: string;
  readonly uploadMs: number;
  readonly pieces: number;
  readonly priority?: string;
  /** Give up (and count a timeout) after this long. */
  readonly timeoutMs: number;
  /** Stop after sending this share of the body (0..1): a stalled upload that never finishes. */
  readonly stallAt?: number;
}

/** What the server answered: status and error code (0 and null when the socket closed without an answer), and when. */
export interface SlowUploadResult {
  readonly status: number;
  readonly code: string | null;
  /** The error message, when the answer was an error. */
  readonly message: string | null;
  readonly ms: number;
  readonly timedOut: boolean;
  /** Whether the server closed the connection after answering. */
  readonly closed: boolean;
}

const HEAD_END = '\r\n\r\n';

/** Parses the status and the `error` field of a raw HTTP response (the first one on the socket). */
function parseAnswer(raw: string): { status: number; code: string | null; message: string | null; complete: boolean } {
  const end = raw.indexOf(HEAD_END);
  if (end < 0) return { status: 0, code: null, message: null, complete: false };
  const status = Number(raw.slice(9, 12));
  const length = /\r\ncontent-length: *(\d+)/i.exec(raw.slice(0, end));
  const body = raw.slice(end + HEAD_END.length);
  const complete = length ? body.length >= Number(length[1]) : false;
  const code = complete ? (/"error":"([a-z_]+)"/.exec(body)?.[1] ?? null) : null;
  const message = complete ? (/"message":"((?:[^"\\]|\\.)*)"/.exec(body)?.[1] ?? null) : null;
  return { status, code, message, complete };
}

/** Sends one request whose body trickles in; resolves once the server answers (or the socket closes, or the timeout). */
export function slowUpload(options: SlowUploadOptions): { result: Promise<SlowUploadResult>; socket: Socket } {
  const target = new URL(options.url);
  const started = performance.now();
  const socket = connect(Number(target.port), target.hostname);
  const body = Buffer.from(options.body);
  const pieces = Math.max(1, options.pieces);
  const sendUpTo = Math.round(body.length * (options.stallAt ?? 1));
  const timers: NodeJS.Timeout[] = [];
  const result = new Promise<SlowUploadResult>((resolve) => {
    let raw = '';
    let answered: { status: number; code: string | null; message: string | null } | null = null;
    let timedOut = false;
    const finish = (closed: boolean) => {
      for (const t of timers) clearTimeout(t);
      clearTimeout(deadline);
      socket.destroy();
      resolve({
        status: answered?.status ?? 0,
        code: answered?.code ?? null,
        message: answered?.message ?? null,
        ms: performance.now() - started,
        timedOut,
        closed,
      });
    };
    const deadline = setTimeout(() => {
      timedOut = true;
      finish(false);
    }, options.timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      raw += chunk.toString('latin1');
      const answer = parseAnswer(raw);
      if (answer.complete && !answered) {
        answered = answer;
        // A server that closes after answering does so right away; one that keeps the socket does not.
        timers.push(setTimeout(() => finish(false), 50));
      }
    });
    socket.on('close', () => finish(answered !== null));
    socket.on('error', () => {});
  });
  const priority = options.priority ? `X-Priority: ${options.priority}\r\n` : '';
  socket.write(
    `POST /v1/events HTTP/1.1\r\nHost: ${target.host}\r\nAuthorization: Bearer ${options.key}\r\n${priority}` +
      `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
  );
  for (let i = 0; i < pieces; i++) {
    const from = Math.floor((i * body.length) / pieces);
    const to = Math.min(sendUpTo, Math.floor(((i + 1) * body.length) / pieces));
    if (to <= from) break;
    const at = ((i + 1) * options.uploadMs) / pieces;
    timers.push(setTimeout(() => !socket.destroyed && socket.write(body.subarray(from, to)), at));
  }
  return { result, socket };
}
